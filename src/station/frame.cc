#include "station/frame.h"

#include <opencv2/imgproc.hpp>

namespace zeroqc {

StatusOr<PixelFormat> ParsePixelFormat(std::string_view name) {
  if (name == "Mono8") return PixelFormat::kMono8;
  if (name == "Mono12") return PixelFormat::kMono12;
  if (name == "RGB8") return PixelFormat::kRgb8;
  if (name == "BayerRG8") return PixelFormat::kBayerRg8;
  return InvalidArgument("pixel format '" + std::string(name.substr(0, 32)) + "' is not one zeroqc reads (Mono8, Mono12, RGB8, BayerRG8)");
}

std::string PixelFormatName(PixelFormat f) {
  switch (f) {
    case PixelFormat::kMono8: return "Mono8";
    case PixelFormat::kMono12: return "Mono12";
    case PixelFormat::kRgb8: return "RGB8";
    case PixelFormat::kBayerRg8: return "BayerRG8";
  }
  return "?";
}

size_t FrameBytes(PixelFormat f, int width, int height) {
  const size_t px = size_t(width) * size_t(height);
  switch (f) {
    case PixelFormat::kMono12: return 2 * px;
    case PixelFormat::kRgb8: return 3 * px;
    default: return px;
  }
}

StatusOr<cv::Mat> FrameToBgr(std::span<const uint8_t> data, int width, int height, PixelFormat format) {
  if (width <= 0 || height <= 0 || width > 65535 || height > 65535)
    return InvalidArgument("frame of " + std::to_string(width) + "x" + std::to_string(height) + " pixels");
  const size_t want = FrameBytes(format, width, height);
  if (data.size() != want)
    return Corrupt(PixelFormatName(format) + " frame of " + std::to_string(width) + "x" + std::to_string(height) + " needs " +
                   std::to_string(want) + " bytes, got " + std::to_string(data.size()) + ": an incomplete frame is not inspected");
  // The camera's buffer is only borrowed: every branch copies into a new BGR image.
  auto* p = const_cast<uint8_t*>(data.data());
  cv::Mat bgr;
  switch (format) {
    case PixelFormat::kMono8:
      cv::cvtColor(cv::Mat(height, width, CV_8UC1, p), bgr, cv::COLOR_GRAY2BGR);
      break;
    case PixelFormat::kMono12: {
      cv::Mat eight;
      cv::Mat(height, width, CV_16UC1, p).convertTo(eight, CV_8U, 1.0 / 16);  // 12 bits to 8
      cv::cvtColor(eight, bgr, cv::COLOR_GRAY2BGR);
      break;
    }
    case PixelFormat::kRgb8:
      cv::cvtColor(cv::Mat(height, width, CV_8UC3, p), bgr, cv::COLOR_RGB2BGR);
      break;
    case PixelFormat::kBayerRg8:
      // OpenCV names a Bayer pattern by the second row's first two pixels: GenICam's BayerRG (R G /
      // G B) is OpenCV's BayerBG.
      cv::cvtColor(cv::Mat(height, width, CV_8UC1, p), bgr, cv::COLOR_BayerBG2BGR);
      break;
  }
  return bgr;
}

}  // namespace zeroqc
