// Frames in each pixel format a station reads, made from a known colour image: a wrong channel
// order or a Bayer pattern read from the wrong corner turns red into blue and fails at once.
#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include "station/frame.h"

namespace zeroqc {
namespace {

// Left half pure red, right half pure blue, a green band across the middle (BGR).
cv::Mat Scene() {
  cv::Mat m(64, 96, CV_8UC3, cv::Scalar(0, 0, 255));
  m(cv::Rect(48, 0, 48, 64)).setTo(cv::Scalar(255, 0, 0));
  m(cv::Rect(0, 28, 96, 8)).setTo(cv::Scalar(0, 255, 0));
  return m;
}

cv::Vec3b At(const cv::Mat& m, int x, int y) { return m.at<cv::Vec3b>(y, x); }

TEST(Frame, Rgb8IsReorderedToBgr) {
  cv::Mat rgb;
  cv::cvtColor(Scene(), rgb, cv::COLOR_BGR2RGB);
  auto bgr = FrameToBgr({rgb.data, rgb.total() * 3}, 96, 64, PixelFormat::kRgb8);
  ASSERT_TRUE(bgr.ok()) << bgr.status().message();
  EXPECT_EQ(At(*bgr, 10, 5), cv::Vec3b(0, 0, 255));
  EXPECT_EQ(At(*bgr, 80, 5), cv::Vec3b(255, 0, 0));
}

TEST(Frame, BayerRg8IsDemosaicedFromItsRedCorner) {
  // GenICam BayerRG8: R G on even rows, G B on odd rows.
  const cv::Mat s = Scene();
  cv::Mat mosaic(64, 96, CV_8UC1);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 96; ++x) {
      const cv::Vec3b p = At(s, x, y);
      mosaic.at<uint8_t>(y, x) = y % 2 == 0 ? (x % 2 == 0 ? p[2] : p[1]) : (x % 2 == 0 ? p[1] : p[0]);
    }
  auto bgr = FrameToBgr({mosaic.data, mosaic.total()}, 96, 64, PixelFormat::kBayerRg8);
  ASSERT_TRUE(bgr.ok());
  const cv::Vec3b red = At(*bgr, 10, 8), blue = At(*bgr, 80, 8), green = At(*bgr, 40, 31);
  EXPECT_GT(red[2], 200);
  EXPECT_LT(red[0], 40);
  EXPECT_GT(blue[0], 200);
  EXPECT_LT(blue[2], 40);
  EXPECT_GT(green[1], 200);
  EXPECT_LT(green[2], 40);
}

TEST(Frame, Mono12KeepsItsTopBitsAndMono8IsGray) {
  std::vector<uint16_t> twelve = {0, 2048, 4095, 16};
  auto bgr = FrameToBgr({reinterpret_cast<const uint8_t*>(twelve.data()), twelve.size() * 2}, 2, 2, PixelFormat::kMono12);
  ASSERT_TRUE(bgr.ok());
  EXPECT_EQ(At(*bgr, 0, 0), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(At(*bgr, 1, 0), cv::Vec3b(128, 128, 128));
  EXPECT_EQ(At(*bgr, 0, 1), cv::Vec3b(255, 255, 255));
  EXPECT_EQ(At(*bgr, 1, 1), cv::Vec3b(1, 1, 1));
  std::vector<uint8_t> eight = {7, 200};
  auto gray = FrameToBgr(eight, 2, 1, PixelFormat::kMono8);
  ASSERT_TRUE(gray.ok());
  EXPECT_EQ(At(*gray, 1, 0), cv::Vec3b(200, 200, 200));
}

TEST(Frame, AnIncompleteFrameOrAnUnknownFormatIsRefused) {
  std::vector<uint8_t> short_frame(96 * 64 - 1);
  auto r = FrameToBgr(short_frame, 96, 64, PixelFormat::kMono8);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_NE(r.status().message().find("incomplete"), std::string::npos);
  EXPECT_FALSE(FrameToBgr(short_frame, 0, 64, PixelFormat::kMono8).ok());
  auto f = ParsePixelFormat("YUV422");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("Mono8, Mono12, RGB8, BayerRG8"), std::string::npos);
  for (const char* n : {"Mono8", "Mono12", "RGB8", "BayerRG8"}) EXPECT_EQ(PixelFormatName(*ParsePixelFormat(n)), n);
}

}  // namespace
}  // namespace zeroqc
