#include "image/decode.h"

#include <algorithm>
#include <cstring>
#include <fstream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "image/integrity.h"
#include "image/probe.h"

namespace zeroqc {

namespace {

// A JPEG ends with its EOI marker (FF D9) and a PNG with its IEND chunk; decoders fill a cut-off
// file with grey and call it whole, so a half-written or truncated upload is caught here. Some
// writers pad after the end marker, so the marker is looked for near the end, not at it.
bool EndsWhole(std::span<const uint8_t> b, const std::string& format) {
  const size_t tail = std::min<size_t>(b.size(), 4096);
  const auto* from = b.data() + b.size() - tail;
  const auto* to = b.data() + b.size();
  if (format == "jpeg") {
    static const uint8_t eoi[] = {0xFF, 0xD9};
    return std::search(from, to, eoi, eoi + 2) != to;
  }
  if (format == "png") {
    static const uint8_t iend[] = {'I', 'E', 'N', 'D'};
    return std::search(from, to, iend, iend + 4) != to;
  }
  return true;
}

// The largest libjpeg scale-down (2, 4 or 8) that keeps the long side at least `side`.
int ReductionFor(const ImageHeader& h, const ImageLimits& limits) {
  if (h.format != "jpeg" || limits.decode_side <= 0) return 1;
  const int64_t long_side = std::max(h.width, h.height);
  int d = 1;
  while (d < 8 && long_side / (2 * d) >= limits.decode_side) d *= 2;
  return d;
}

}  // namespace

namespace {

// Everything that can be known before decoding: size limits, format, the end marker.
StatusOr<ImageHeader> Screen(std::span<const uint8_t> bytes, const ImageLimits& limits) {
  if (static_cast<int64_t>(bytes.size()) > limits.max_bytes)
    return TooLarge("the file has " + std::to_string(bytes.size()) + " bytes, the limit is " +
                    std::to_string(limits.max_bytes));
  auto header = ProbeImage(bytes);
  if (!header.ok()) return header.status();
  if (header->width <= 0 || header->height <= 0) return Corrupt("the image has zero width or height");
  // Each side first: the product of two 32-bit header fields overflows (found by fuzz_decode).
  if (header->width > limits.max_pixels || header->height > limits.max_pixels ||
      header->width * header->height > limits.max_pixels)
    return TooLarge(std::to_string(header->width) + "x" + std::to_string(header->height) +
                    " pixels exceed the limit of " + std::to_string(limits.max_pixels) + " pixels");
  // cv::imdecode picks its decoder by content, not by our probe: bytes that also carry DICOM's
  // signature (DICM at offset 128) reach GDCM, which aborts the process on malformed input
  // (found by fuzz_decode). DICOM is not a format we accept.
  if (bytes.size() >= 132 && std::memcmp(bytes.data() + 128, "DICM", 4) == 0)
    return Unsupported("the " + header->format + " file also carries a DICOM signature: refused");
  if (!EndsWhole(bytes, header->format))
    return Incomplete("the " + header->format + " file is truncated (no end marker): it may still be being written");
  return header;
}

}  // namespace

StatusOr<std::string> VerifyImage(std::span<const uint8_t> bytes, const ImageLimits& limits) {
  auto header = Screen(bytes, limits);
  if (!header.ok()) return header.status();
  if (header->format == "jpeg" || header->format == "png") {
    if (auto whole = CheckComplete(bytes, header->format); !whole.ok()) return whole;
    return header->format;
  }
  ImageLimits decode = limits;
  decode.check_complete = false;
  auto img = DecodeImage(bytes, decode);
  if (!img.ok()) return img.status();
  return img->format;
}

StatusOr<Image> DecodeImage(std::span<const uint8_t> bytes, const ImageLimits& limits) {
  auto header = Screen(bytes, limits);
  if (!header.ok()) return header.status();
  // Whole, not mended: a damaged file decodes "fine" with grey where data was missing.
  if (limits.check_complete)
    if (auto whole = CheckComplete(bytes, header->format); !whole.ok()) return whole;
  const int d = ReductionFor(*header, limits);
  const int flags = d == 8 ? cv::IMREAD_REDUCED_COLOR_8 : d == 4 ? cv::IMREAD_REDUCED_COLOR_4
                    : d == 2 ? cv::IMREAD_REDUCED_COLOR_2 : cv::IMREAD_COLOR;
  cv::Mat raw;
  try {
    // Colour modes apply EXIF orientation and turn gray, RGBA and 16-bit data into 8-bit BGR.
    raw = cv::imdecode(cv::Mat(1, static_cast<int>(bytes.size()), CV_8U, const_cast<uint8_t*>(bytes.data())), flags);
  } catch (const cv::Exception& e) {
    return Corrupt("the " + header->format + " data cannot be decoded: " + e.err);
  }
  if (raw.empty()) return Corrupt("the " + header->format + " data is truncated or corrupt");
  // libjpeg rounds a scaled side up; EXIF orientation may have swapped the sides.
  const int w = int((header->width + d - 1) / d), h = int((header->height + d - 1) / d);
  const bool upright = raw.cols == w && raw.rows == h, turned = raw.cols == h && raw.rows == w;
  if (!upright && !turned) return Corrupt("decoded size does not match the " + header->format + " header");
  Image img;
  img.format = header->format;
  img.bgr = raw;
  img.original = turned && !upright ? cv::Size(int(header->height), int(header->width))
                                    : cv::Size(int(header->width), int(header->height));
  return img;
}

StatusOr<Image> LoadImage(const std::filesystem::path& path, const ImageLimits& limits) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  if (ec) return NotFound("cannot read " + path.string() + ": " + ec.message());
  if (static_cast<int64_t>(size) > limits.max_bytes)
    return TooLarge(path.string() + " has " + std::to_string(size) + " bytes, the limit is " +
                    std::to_string(limits.max_bytes));
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> bytes(size);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
    return IoError("cannot read " + path.string());
  auto img = DecodeImage(bytes, limits);
  if (!img.ok()) return Status(img.status().code(), path.string() + ": " + img.status().message());
  img->path = path.string();
  return img;
}

StatusOr<std::vector<std::filesystem::path>> ListImages(const std::filesystem::path& dir) {
  static const std::vector<std::string> kExt = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"};
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return NotFound(dir.string() + " is not a folder");
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (e.is_regular_file() && std::find(kExt.begin(), kExt.end(), ext) != kExt.end()) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace zeroqc
