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
  // A JPEG whose long side is at least twice this is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's
  // DCT scaling: less time and memory than a full decode and a resize), its long side staying at
  // least this. 0 = full resolution. Engines say what they need (Engine::DecodeSide).
  int decode_side = 0;
  // Refuse (kCorrupt) a JPEG or PNG that its decoder would mend: any libjpeg or libpng warning
  // (see integrity.h). For untrusted bytes (serve's uploads): it costs a second pass, +5 ms for a
  // 5.5-megapixel JPEG and +33 ms for a 1024x1024 PNG (bench/decode_bench.cc).
  bool check_complete = false;
};

struct Image {
  cv::Mat bgr;         // 8-bit, 3 channels, upright; maybe decoded at a reduced scale
  std::string format;  // as probed from the header
  std::string path;    // where it came from, if a file
  cv::Size original;   // upright size of the file's pixels; empty = bgr's size
  // The size that results' boxes refer to: the original pixels, whatever scale was decoded.
  cv::Size size() const { return original.empty() ? bgr.size() : original; }
};

StatusOr<Image> DecodeImage(std::span<const uint8_t> bytes, const ImageLimits& limits = {});
StatusOr<Image> LoadImage(const std::filesystem::path& path, const ImageLimits& limits = {});
// That `bytes` are an image within the limits and whole (as check_complete), without keeping its
// pixels: JPEG and PNG are read row by row (memory: a row, not the image: an 81-megapixel PNG costs
// kilobytes), other formats decoded. The format, or what DecodeImage would refuse it for.
StatusOr<std::string> VerifyImage(std::span<const uint8_t> bytes, const ImageLimits& limits = {});

// Image files directly in `dir` (by extension), sorted by name.
StatusOr<std::vector<std::filesystem::path>> ListImages(const std::filesystem::path& dir);

}  // namespace zeroqc
