#include "engines/patch/regions.h"

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

namespace zeroqc {
namespace {

TEST(Regions, BoxesOfSyntheticBlobs) {
  cv::Mat map(100, 200, CV_32F, cv::Scalar(0.2));
  cv::rectangle(map, cv::Rect(10, 20, 30, 15), cv::Scalar(2.0), cv::FILLED);
  cv::circle(map, {150, 60}, 10, cv::Scalar(5.0), cv::FILLED);
  map.at<float>(90, 190) = 9.0;  // one hot pixel: noise, below min_area
  auto regions = ExtractRegions(map, 1.0, 5);
  ASSERT_EQ(regions.size(), 2u);
  EXPECT_DOUBLE_EQ(regions[0].peak, 5.0);  // highest first
  EXPECT_EQ(regions[0].box, cv::Rect(140, 50, 21, 21));
  EXPECT_EQ(regions[1].box, cv::Rect(10, 20, 30, 15));
  EXPECT_EQ(regions[1].area, 30 * 15);
  EXPECT_EQ(cv::countNonZero(regions[1].mask), 30 * 15);
}

TEST(Regions, NothingAboveThresholdMeansNoRegion) {
  cv::Mat map(50, 50, CV_32F, cv::Scalar(0.9));
  EXPECT_TRUE(ExtractRegions(map, 1.0, 1).empty());
}

TEST(Regions, TouchingDiagonallyIsOneRegion) {
  cv::Mat map = cv::Mat::zeros(10, 10, CV_32F);
  map.at<float>(2, 2) = map.at<float>(3, 3) = map.at<float>(4, 4) = 2.f;
  auto r = ExtractRegions(map, 1.0, 1);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].box, cv::Rect(2, 2, 3, 3));
}

}  // namespace
}  // namespace zeroqc
