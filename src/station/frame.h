// Camera frames as GenICam cameras send them (PFNC pixel formats), turned into the BGR images the
// engines take. A frame whose size does not match its format is an error, never a guess.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <opencv2/core.hpp>

#include "core/status.h"

namespace zeroqc {

enum class PixelFormat { kMono8, kMono12, kRgb8, kBayerRg8 };

// "Mono8", "Mono12", "RGB8" or "BayerRG8"; kInvalidArgument names the choices.
StatusOr<PixelFormat> ParsePixelFormat(std::string_view name);
std::string PixelFormatName(PixelFormat f);
// Bytes a width x height frame takes: Mono12 is unpacked, two bytes a pixel, little-endian.
size_t FrameBytes(PixelFormat f, int width, int height);

// Mono8 and Mono12 become gray BGR (Mono12 keeps its top 8 bits); RGB8 is reordered; BayerRG8 (red
// at the top-left of each 2x2 block) is demosaiced.
StatusOr<cv::Mat> FrameToBgr(std::span<const uint8_t> data, int width, int height, PixelFormat format);

}  // namespace zeroqc
