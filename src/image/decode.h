// Decoding of QC and reference images: any supported format, EXIF orientation applied,
// gray and RGBA accepted, everything else refused with a clear error.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

#include <opencv2/core.hpp>

#include "core/status.h"

namespace zeroqc {

struct ImageLimits {
  int64_t max_pixels = 100'000'000;       // refuse larger images before decoding (decompression bombs)
  int64_t max_bytes = 256ll * 1024 * 1024;  // refuse larger files before reading them
};

struct Image {
  cv::Mat bgr;         // 8-bit, 3 channels, upright
  std::string format;  // as probed from the header
  std::string path;    // where it came from, if a file
};

StatusOr<Image> DecodeImage(std::span<const uint8_t> bytes, const ImageLimits& limits = {});
StatusOr<Image> LoadImage(const std::filesystem::path& path, const ImageLimits& limits = {});

// Image files directly in `dir` (by extension), sorted by name.
StatusOr<std::vector<std::filesystem::path>> ListImages(const std::filesystem::path& dir);

}  // namespace zeroqc
