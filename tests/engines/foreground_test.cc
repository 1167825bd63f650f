#include "engines/patch/foreground.h"

#include <gtest/gtest.h>

namespace zeroqc {
namespace {

constexpr int kH = 20, kW = 16, kDim = 8;

// Descriptors of a grid whose middle (rows 5-14, columns 4-11) shows the part: two other leading
// columns (a first layer), then the deepest layer's block, where part and background differ.
cv::Mat Scene(cv::RNG& rng, bool part_in_middle = true) {
  cv::Mat d(kH * kW, 2 + kDim, CV_32F);
  rng.fill(d, cv::RNG::NORMAL, 0, 0.05);
  for (int y = 0; y < kH; ++y)
    for (int x = 0; x < kW; ++x) {
      const bool part = (y >= 5 && y < 15 && x >= 4 && x < 12) == part_in_middle;
      d.at<float>(y * kW + x, 2 + (part ? 0 : 1)) += 1.0f;
    }
  return d;
}

TEST(Foreground, MasksTheBackgroundAndKeepsThePartWithAMargin) {
  cv::RNG rng(3);
  const cv::Mat direction = ForegroundDirection({Scene(rng), Scene(rng)}, kDim, kH, kW);
  ASSERT_EQ(direction.rows, 2);
  ASSERT_EQ(direction.cols, kDim);
  const cv::Mat part = Scene(rng);
  std::vector<float> d(kH * kW, 1.0f);
  MaskBackground(direction, part, kH, kW, d);
  auto at = [&](int y, int x) { return d[y * kW + x]; };
  EXPECT_EQ(at(10, 8), 1.0f);  // the part
  EXPECT_EQ(at(5, 4), 1.0f);   // its corner
  EXPECT_EQ(at(3, 8), 1.0f);   // two patches off its edge: the outline stays in
  EXPECT_EQ(at(2, 8), 0.0f);   // three off: background
  EXPECT_EQ(at(0, 0), 0.0f);
  EXPECT_EQ(at(19, 15), 0.0f);
  int kept = 0;
  for (float v : d) kept += v > 0;
  EXPECT_EQ(kept, 14 * 12);  // the 10 x 8 part grown by 2 on every side
}

TEST(Foreground, ThePartIsWhatFillsTheMiddleOfTheFirstImage) {
  // The same two kinds of patches with their roles swapped: the direction turns with them.
  cv::RNG rng(5);
  const cv::Mat swapped = ForegroundDirection({Scene(rng, false)}, kDim, kH, kW);
  const cv::Mat normal = ForegroundDirection({Scene(rng, true)}, kDim, kH, kW);
  EXPECT_LT(swapped.row(1).dot(normal.row(1)), -0.9);
  std::vector<float> d(kH * kW, 1.0f);
  MaskBackground(swapped, Scene(rng, false), kH, kW, d);
  EXPECT_EQ(d[10 * kW + 8], 1.0f) << "whatever fills the middle is the part";
  EXPECT_EQ(d[0], 0.0f);
}

TEST(Foreground, AnImageWithNoForegroundIsNotMasked) {
  cv::RNG rng(7);
  const cv::Mat direction = ForegroundDirection({Scene(rng)}, kDim, kH, kW);
  cv::Mat empty(kH * kW, 2 + kDim, CV_32F);
  rng.fill(empty, cv::RNG::NORMAL, 0, 0.05);
  empty.col(3) += 1.0f;  // background everywhere
  std::vector<float> d(kH * kW, 0.5f);
  MaskBackground(direction, empty, kH, kW, d);
  for (float v : d) ASSERT_EQ(v, 0.5f);
}

}  // namespace
}  // namespace zeroqc
