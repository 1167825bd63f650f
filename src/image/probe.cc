#include "image/probe.h"

#include <cstring>

namespace zeroqc {
namespace {

uint32_t Be16(const uint8_t* p) { return (p[0] << 8) | p[1]; }
uint32_t Be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }
uint32_t Le16(const uint8_t* p) { return p[0] | (p[1] << 8); }
uint32_t Le32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t(p[3]) << 24); }
bool Starts(std::span<const uint8_t> b, const char* magic, size_t at = 0) {
  size_t n = std::strlen(magic);
  return b.size() >= at + n && std::memcmp(b.data() + at, magic, n) == 0;
}

StatusOr<ImageHeader> Png(std::span<const uint8_t> b) {
  if (b.size() < 24 || !Starts(b, "IHDR", 12)) return Corrupt("PNG header is truncated");
  return ImageHeader{"png", Be32(&b[16]), Be32(&b[20])};
}

StatusOr<ImageHeader> Jpeg(std::span<const uint8_t> b) {
  size_t i = 2;
  while (i + 4 <= b.size()) {
    if (b[i] != 0xFF) return Corrupt("JPEG marker expected at byte " + std::to_string(i));
    uint8_t m = b[i + 1];
    if (m == 0xFF) { ++i; continue; }  // fill byte
    if (m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) { i += 2; continue; }
    uint32_t len = Be16(&b[i + 2]);
    if (len < 2) return Corrupt("JPEG segment length is invalid");
    bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof) {
      if (i + 9 > b.size()) break;
      return ImageHeader{"jpeg", Be16(&b[i + 7]), Be16(&b[i + 5])};
    }
    if (m == 0xDA || m == 0xD9) break;  // scan data before any frame header
    i += 2 + len;
  }
  return Corrupt("JPEG has no frame header");
}

StatusOr<ImageHeader> Bmp(std::span<const uint8_t> b) {
  if (b.size() < 26) return Corrupt("BMP header is truncated");
  uint32_t dib = Le32(&b[14]);
  if (dib == 12) return ImageHeader{"bmp", Le16(&b[18]), Le16(&b[20])};
  int32_t w = static_cast<int32_t>(Le32(&b[18])), h = static_cast<int32_t>(Le32(&b[22]));
  return ImageHeader{"bmp", std::abs(int64_t{w}), std::abs(int64_t{h})};
}

StatusOr<ImageHeader> Tiff(std::span<const uint8_t> b) {
  bool le = b[0] == 'I';
  auto u16 = [&](size_t o) { return le ? Le16(&b[o]) : Be16(&b[o]); };
  auto u32 = [&](size_t o) { return le ? Le32(&b[o]) : Be32(&b[o]); };
  if (b.size() < 8) return Corrupt("TIFF header is truncated");
  size_t ifd = u32(4);
  if (ifd + 2 > b.size()) return Corrupt("TIFF directory offset is outside the file");
  size_t n = u16(ifd);
  ImageHeader h{"tiff", 0, 0};
  for (size_t k = 0; k < n; ++k) {
    size_t e = ifd + 2 + 12 * k;
    if (e + 12 > b.size()) return Corrupt("TIFF directory is truncated");
    uint32_t tag = u16(e), type = u16(e + 2);
    uint32_t v = type == 3 ? u16(e + 8) : u32(e + 8);
    if (tag == 256) h.width = v;
    if (tag == 257) h.height = v;
  }
  if (h.width == 0 || h.height == 0) return Corrupt("TIFF has no image width or length");
  return h;
}

StatusOr<ImageHeader> Webp(std::span<const uint8_t> b) {
  if (b.size() < 30) return Corrupt("WebP header is truncated");
  if (Starts(b, "VP8 ", 12)) return ImageHeader{"webp", Le16(&b[26]) & 0x3FFF, Le16(&b[28]) & 0x3FFF};
  if (Starts(b, "VP8L", 12)) {
    uint32_t bits = Le32(&b[21]);
    return ImageHeader{"webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1};
  }
  if (Starts(b, "VP8X", 12))
    return ImageHeader{"webp", (b[24] | (b[25] << 8) | (b[26] << 16)) + 1, (b[27] | (b[28] << 8) | (b[29] << 16)) + 1};
  return Corrupt("WebP chunk is not VP8, VP8L or VP8X");
}

}  // namespace

StatusOr<ImageHeader> ProbeImage(std::span<const uint8_t> b) {
  if (b.empty()) return Corrupt("the file is empty");
  if (Starts(b, "\x89PNG\r\n\x1a\n")) return Png(b);
  if (b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return Jpeg(b);
  if (Starts(b, "BM")) return Bmp(b);
  if (b.size() >= 4 && ((b[0] == 'I' && b[1] == 'I' && b[2] == 42 && b[3] == 0) ||
                        (b[0] == 'M' && b[1] == 'M' && b[2] == 0 && b[3] == 42)))
    return Tiff(b);
  if (Starts(b, "RIFF") && Starts(b, "WEBP", 8)) return Webp(b);
  return Unsupported("not a PNG, JPEG, BMP, TIFF or WebP image");
}

}  // namespace zeroqc
