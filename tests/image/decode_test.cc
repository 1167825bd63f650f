#include "image/decode.h"

#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "image/probe.h"
#include "test_support.h"

namespace zeroqc {
namespace {

std::vector<uint8_t> Encode(const cv::Mat& m, const std::string& ext) {
  std::vector<uint8_t> buf;
  EXPECT_TRUE(cv::imencode(ext, m, buf)) << ext;
  return buf;
}

cv::Mat Pattern(int w, int h) {  // asymmetric, so orientation mistakes show
  cv::Mat m(h, w, CV_8UC3, cv::Scalar(30, 60, 90));
  cv::rectangle(m, {0, 0}, {w / 4, h / 4}, cv::Scalar(0, 0, 255), cv::FILLED);
  return m;
}

TEST(Decode, EveryFormatRoundTrips) {
  cv::Mat src = Pattern(64, 48);
  for (const char* ext : {".png", ".jpg", ".bmp", ".tiff", ".webp"}) {
    auto img = DecodeImage(Encode(src, ext));
    ASSERT_TRUE(img.ok()) << ext << ": " << img.status().message();
    EXPECT_EQ(img->bgr.cols, 64) << ext;
    EXPECT_EQ(img->bgr.rows, 48) << ext;
    EXPECT_EQ(img->bgr.type(), CV_8UC3) << ext;
    auto px = img->bgr.at<cv::Vec3b>(2, 2);
    EXPECT_GT(px[2], 200) << ext << ": top-left should stay red";
  }
}

TEST(Decode, ProbeReadsSizesFromHeaders) {
  cv::Mat src = Pattern(70, 33);
  for (auto [ext, fmt] : {std::pair{".png", "png"}, {".jpg", "jpeg"}, {".bmp", "bmp"}, {".tiff", "tiff"}, {".webp", "webp"}}) {
    auto h = ProbeImage(Encode(src, ext));
    ASSERT_TRUE(h.ok()) << ext << ": " << h.status().message();
    EXPECT_EQ(h->format, fmt);
    EXPECT_EQ(h->width, 70) << ext;
    EXPECT_EQ(h->height, 33) << ext;
  }
}

TEST(Decode, GrayAndRgbaBecomeBgr) {
  cv::Mat gray(20, 30, CV_8UC1, cv::Scalar(128));
  auto g = DecodeImage(Encode(gray, ".png"));
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->bgr.type(), CV_8UC3);
  cv::Mat rgba(20, 30, CV_8UC4, cv::Scalar(10, 20, 30, 128));
  auto a = DecodeImage(Encode(rgba, ".png"));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->bgr.type(), CV_8UC3);
  EXPECT_EQ(a->bgr.at<cv::Vec3b>(0, 0)[2], 30);
}

// A JPEG whose EXIF says "rotate 90 degrees clockwise to display" (orientation 6).
std::vector<uint8_t> WithExifOrientation(std::vector<uint8_t> jpeg, uint8_t orientation) {
  const uint8_t exif[] = {0xFF, 0xE1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0,
                          'M', 'M', 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08,  // TIFF header, IFD at 8
                          0x00, 0x01,                                    // one entry
                          0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, orientation, 0x00, 0x00,
                          0x00, 0x00, 0x00, 0x00};  // no next IFD
  jpeg.insert(jpeg.begin() + 2, std::begin(exif), std::end(exif));
  return jpeg;
}

TEST(Decode, AppliesExifOrientation) {
  auto bytes = WithExifOrientation(Encode(Pattern(80, 40), ".jpg"), 6);
  auto img = DecodeImage(bytes);
  ASSERT_TRUE(img.ok()) << img.status().message();
  EXPECT_EQ(img->bgr.cols, 40);
  EXPECT_EQ(img->bgr.rows, 80);
  // The red top-left corner is now the top-right corner.
  EXPECT_GT(img->bgr.at<cv::Vec3b>(2, 37)[2], 200);
  EXPECT_LT(img->bgr.at<cv::Vec3b>(2, 2)[2], 150);
}

// Large JPEGs decode at a reduced scale when asked: the long side stays at least decode_side and
// the original (upright) size is kept for the boxes.
TEST(Decode, LargeJpegDecodesReducedAndKeepsItsOriginalSize) {
  const auto jpeg = Encode(Pattern(3000, 2000), ".jpg");
  ImageLimits l;
  l.decode_side = 700;
  auto img = DecodeImage(jpeg, l);
  ASSERT_TRUE(img.ok()) << img.status().message();
  EXPECT_EQ(img->bgr.size(), cv::Size(750, 500)) << "1/4: 3000/8 = 375 would be under 700";
  EXPECT_EQ(img->size(), cv::Size(3000, 2000));
  EXPECT_GT(img->bgr.at<cv::Vec3b>(2, 2)[2], 200) << "top-left stays red";

  auto turned = DecodeImage(WithExifOrientation(jpeg, 6), l);
  ASSERT_TRUE(turned.ok()) << turned.status().message();
  EXPECT_EQ(turned->bgr.size(), cv::Size(500, 750));
  EXPECT_EQ(turned->size(), cv::Size(2000, 3000)) << "the original size is upright too";

  auto full = DecodeImage(jpeg);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->bgr.size(), cv::Size(3000, 2000)) << "no decode_side: full resolution";
  l.decode_side = 2000;
  EXPECT_EQ(DecodeImage(jpeg, l)->bgr.size(), cv::Size(3000, 2000)) << "half would be under 2000";
  l.decode_side = 1;
  EXPECT_EQ(DecodeImage(jpeg, l)->bgr.size(), cv::Size(375, 250)) << "1/8 at most";
  // Only JPEG has a reduced decode; a PNG stays whole.
  auto png = DecodeImage(Encode(Pattern(1200, 800), ".png"), l);
  ASSERT_TRUE(png.ok());
  EXPECT_EQ(png->bgr.size(), cv::Size(1200, 800));
  EXPECT_EQ(png->size(), cv::Size(1200, 800));
  // An odd size rounds up, as libjpeg does.
  auto odd = DecodeImage(Encode(Pattern(1001, 999), ".jpg"), l);
  ASSERT_TRUE(odd.ok()) << odd.status().message();
  EXPECT_EQ(odd->bgr.size(), cv::Size(126, 125));
  EXPECT_EQ(odd->size(), cv::Size(1001, 999));
}

TEST(Decode, RefusesBadInputWithClearErrors) {
  auto png = Encode(Pattern(64, 64), ".png");

  auto empty = DecodeImage({});
  EXPECT_EQ(empty.status().code(), Code::kCorrupt);

  std::vector<uint8_t> gif = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0};
  auto unsupported = DecodeImage(gif);
  EXPECT_EQ(unsupported.status().code(), Code::kUnsupported);
  EXPECT_NE(unsupported.status().message().find("not a PNG"), std::string::npos);

  std::vector<uint8_t> truncated(png.begin(), png.begin() + png.size() / 2);
  auto t = DecodeImage(truncated);
  EXPECT_EQ(t.status().code(), Code::kIncomplete) << t.status().message();

  auto zero = png;  // IHDR width := 0
  zero[16] = zero[17] = zero[18] = zero[19] = 0;
  EXPECT_EQ(DecodeImage(zero).status().code(), Code::kCorrupt);

  auto bomb = png;  // IHDR claims 100000 x 100000 pixels
  for (int at : {16, 20}) bomb[at] = 0, bomb[at + 1] = 0x01, bomb[at + 2] = 0x86, bomb[at + 3] = 0xA0;
  auto b = DecodeImage(bomb);
  EXPECT_EQ(b.status().code(), Code::kTooLarge);
  EXPECT_NE(b.status().message().find("100000x100000"), std::string::npos);

  ImageLimits small;
  small.max_pixels = 1000;
  EXPECT_EQ(DecodeImage(png, small).status().code(), Code::kTooLarge);
  small = {};
  small.max_bytes = 10;
  EXPECT_EQ(DecodeImage(png, small).status().code(), Code::kTooLarge);
}

TEST(Decode, MissingFileIsNotFound) {
  auto r = LoadImage("/nonexistent/zeroqc/x.png");
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/zeroqc/x.png"), std::string::npos);
}

// Mutated bytes of real images: every outcome is an image or an error, never a crash.
TEST(Decode, SurvivesFuzzedRealImages) {
  REQUIRE_DATASETS();
  std::vector<std::filesystem::path> seeds = {
      testing::Datasets() / "mvtec-toothbrush/test/defective/000.png",
      testing::Datasets() / "aws-nova-samples/plasticpart_nok.jpg"};
  cv::Mat small_png = Pattern(32, 32);
  std::vector<std::vector<uint8_t>> corpus = {Encode(small_png, ".png"), Encode(small_png, ".jpg"),
                                              Encode(small_png, ".bmp"), Encode(small_png, ".tiff"),
                                              Encode(small_png, ".webp")};
  for (const auto& s : seeds) {
    std::ifstream in(s, std::ios::binary);
    corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::mt19937 rng(1234);
  int decoded = 0, refused = 0;
  for (int iter = 0; iter < 400; ++iter) {
    auto bytes = corpus[iter % corpus.size()];
    switch (rng() % 4) {
      case 0:  // flip bytes in the header region
        for (int k = 0; k < 4; ++k) bytes[rng() % std::min<size_t>(bytes.size(), 64)] ^= uint8_t(1 + rng() % 255);
        break;
      case 1:  // flip bytes anywhere
        for (int k = 0; k < 16; ++k) bytes[rng() % bytes.size()] = uint8_t(rng());
        break;
      case 2:  // truncate
        bytes.resize(rng() % bytes.size());
        break;
      default:  // splice garbage into the middle
        bytes.insert(bytes.begin() + rng() % bytes.size(), 37, uint8_t(rng()));
    }
    auto img = DecodeImage(bytes);
    if (img.ok()) {
      ++decoded;
      EXPECT_EQ(img->bgr.type(), CV_8UC3);
      EXPECT_GT(img->bgr.total(), 0u);
    } else {
      ++refused;
      EXPECT_FALSE(img.status().message().empty());
    }
  }
  EXPECT_GT(refused, 50);
  EXPECT_EQ(decoded + refused, 400);
}

// Found by tests/fuzz/fuzz_decode: a PNG header of 3204448256 x 3422552066 overflowed the pixel
// count (undefined behaviour) before the limit was checked.
TEST(Decode, HugeHeaderSidesAreTooLargeWithoutOverflow) {
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                              0xBF, 0x00, 0x00, 0x00, 0xCC, 0x00, 0x00, 0x02, 8, 2, 0, 0, 0, 0, 0, 0, 0};
  auto r = DecodeImage(png);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kTooLarge) << r.status().message();
}

// Found by tests/fuzz/fuzz_decode: a WebP header with "DICM" at offset 128 sent cv::imdecode to GDCM,
// which aborted the whole process (any write key could have stopped the server).
TEST(Decode, ADicomSignatureNeverReachesGdcm) {
  std::ifstream in(testing::SourceDir() / "tests/fuzz/regressions/decode-dicom-signature.bin", std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  ASSERT_EQ(bytes.size(), 134u);
  auto r = DecodeImage(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnsupported) << r.status().message();
}

// Issue 10, finding 7: the first 5 KB of a JPEG was inspected as if whole (decoders fill the rest).
TEST(Decode, TruncatedJpegAndPngAreIncompleteNotGrey) {
  cv::Mat img(300, 300, CV_8UC3);
  cv::randu(img, 0, 255);
  for (const char* ext : {".jpg", ".png"}) {
    std::vector<uint8_t> whole;
    cv::imencode(ext, img, whole);
    ASSERT_TRUE(DecodeImage(whole).ok()) << ext;
    std::vector<uint8_t> cut(whole.begin(), whole.begin() + whole.size() / 2);
    auto r = DecodeImage(cut);
    ASSERT_FALSE(r.ok()) << ext;
    EXPECT_EQ(r.status().code(), Code::kIncomplete) << ext;
    EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().message();
    // Padding after the end marker, as some writers leave it, is still a whole image.
    whole.insert(whole.end(), 100, 0);
    EXPECT_TRUE(DecodeImage(whole).ok()) << ext;
  }
}

// Issue 27, finding 5: the first half of a JPEG with its end marker appended decoded with a grey
// lower half (libjpeg only warned), and could become a reference. Whatever a decoder would mend is
// refused now: a cut JPEG scan, a PNG chunk with a wrong CRC, a PNG whose image data stops early.
std::vector<uint8_t> PngChunk(const std::string& type, const std::string& data, bool good_crc) {
  std::vector<uint8_t> c;
  const uint32_t n = uint32_t(data.size());
  for (int s = 24; s >= 0; s -= 8) c.push_back(uint8_t(n >> s));
  c.insert(c.end(), type.begin(), type.end());
  c.insert(c.end(), data.begin(), data.end());
  uint32_t crc = 0xFFFFFFFFu;  // CRC-32 of type and data, as the PNG specification computes it
  for (size_t i = 4; i < c.size(); ++i) {
    crc ^= c[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  crc = ~crc ^ (good_crc ? 0u : 1u);
  for (int s = 24; s >= 0; s -= 8) c.push_back(uint8_t(crc >> s));
  return c;
}

TEST(Decode, WhatADecoderWouldMendIsCorrupt) {
  ImageLimits strict;
  strict.check_complete = true;
  cv::Mat img(300, 300, CV_8UC3);
  cv::randu(img, 0, 255);
  for (int progressive : {0, 1}) {
    std::vector<uint8_t> whole;
    cv::imencode(".jpg", img, whole, {cv::IMWRITE_JPEG_PROGRESSIVE, progressive});
    ASSERT_TRUE(DecodeImage(whole, strict).ok());
    std::vector<uint8_t> mended(whole.begin(), whole.begin() + whole.size() / 2);
    mended.push_back(0xFF), mended.push_back(0xD9);
    ASSERT_TRUE(DecodeImage(mended).ok()) << "libjpeg mends it (else this test shows nothing)";
    auto r = DecodeImage(mended, strict);
    ASSERT_FALSE(r.ok()) << "progressive " << progressive;
    EXPECT_EQ(r.status().code(), Code::kCorrupt);
    EXPECT_NE(r.status().message().find("the jpeg data is damaged"), std::string::npos) << r.status().message();
  }
  std::vector<uint8_t> png;
  cv::imencode(".png", img, png);
  // The last 12 bytes are IEND: a text chunk goes before it, with a right or a wrong CRC.
  auto with_text = [&](bool good) {
    std::vector<uint8_t> b(png.begin(), png.end() - 12);
    auto chunk = PngChunk("tEXt", std::string("Comment\0made by a test", 23), good);
    b.insert(b.end(), chunk.begin(), chunk.end());
    b.insert(b.end(), png.end() - 12, png.end());
    return b;
  };
  EXPECT_TRUE(DecodeImage(with_text(true), strict).ok());
  EXPECT_TRUE(DecodeImage(with_text(false)).ok()) << "libpng mends it";
  auto r = DecodeImage(with_text(false), strict);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_NE(r.status().message().find("the png data is damaged"), std::string::npos) << r.status().message();
  // Half of the image data, then IEND.
  const auto iend = PngChunk("IEND", "", true);
  std::vector<uint8_t> half(png.begin(), png.begin() + png.size() / 2);
  half.insert(half.end(), iend.begin(), iend.end());
  r = DecodeImage(half, strict);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt) << r.status().message();
}

}  // namespace
}  // namespace zeroqc
