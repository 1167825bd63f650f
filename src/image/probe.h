// Reads an image's format and size from its header, before any pixel is decoded, so that
// unsupported formats and decompression bombs are refused cheaply.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/status.h"

namespace zeroqc {

struct ImageHeader {
  std::string format;  // "png", "jpeg", "bmp", "tiff", "webp"
  int64_t width = 0, height = 0;
};

// Fails with kUnsupported for unknown signatures and kCorrupt for a known format whose header is broken.
StatusOr<ImageHeader> ProbeImage(std::span<const uint8_t> bytes);

}  // namespace zeroqc
