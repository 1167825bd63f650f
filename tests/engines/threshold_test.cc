#include "engines/patch/threshold.h"

#include <cmath>

#include <gtest/gtest.h>

namespace zeroqc {
namespace {

TEST(Threshold, MedianPlusSigmasTimesRobustSpread) {
  // median 10, |dev| = {2,1,0,1,2} -> MAD 1 -> spread 1.4826 (above the 5% floor of 0.5)
  EXPECT_NEAR(CalibrateThreshold({8, 9, 10, 11, 12}, 2.0), 10 + 2 * 1.4826, 1e-9);
  EXPECT_NEAR(CalibrateThreshold({12, 8, 11, 9, 10}, 0.0), 10.0, 1e-9);  // order does not matter
}

TEST(Threshold, RareOutliersDoNotDragItUp) {
  std::vector<double> s = {8, 9, 10, 11, 12};
  double base = CalibrateThreshold(s, 2.0);
  s.push_back(40);  // one unusual reference
  // median 10.5, MAD 1.5: 10.5 + 2 * 2.22; a max-based rule would sit above 40.
  EXPECT_NEAR(CalibrateThreshold(s, 2.0), 10.5 + 2 * 1.4826 * 1.5, 1e-9);
  EXPECT_LT(CalibrateThreshold(s, 2.0) - base, 2.0);
}

TEST(Threshold, FewShotSpreadHasAFloor) {
  EXPECT_NEAR(CalibrateThreshold({4.0}, 2.0), 4.0 + 2 * 0.2, 1e-9);
  EXPECT_NEAR(CalibrateThreshold({4.0, 4.0, 4.0}, 1.0), 4.2, 1e-9);
}

TEST(Threshold, FewShotMarginGrowsWithTheReferences) {
  const std::vector<double> loo = {3.0, 3.2, 4.0, 3.1};
  // 4 references: a quarter of the margin (sigmas 2 -> 0.5), on leave-one-out.
  EXPECT_NEAR(CalibrateFewShot(loo, 4, 2.0), CalibrateThreshold(loo, 0.5), 1e-12);
  EXPECT_NEAR(CalibrateFewShot(loo, 4, 2.0), CalibrateThreshold(loo, 0.5), 1e-12);
  EXPECT_NEAR(CalibrateFewShot(loo, 16, 2.0), CalibrateThreshold(loo, 1.0), 1e-12);
  // From 32 references on, the whole margin.
  EXPECT_DOUBLE_EQ(CalibrateFewShot(loo, 32, 2.0), CalibrateThreshold(loo, 2.0));
  EXPECT_DOUBLE_EQ(CalibrateFewShot(loo, 48, 2.0), CalibrateThreshold(loo, 2.0));
  // One reference: its jittered copies come as loo_scores; their median + 35% per sigma.
  EXPECT_NEAR(CalibrateFewShot({1.0, 1.1, 1.2}, 1, 2.0), 1.1 * 1.7, 1e-12);
  // Stricter sigmas raise it.
  EXPECT_GT(CalibrateFewShot(loo, 4, 3.0), CalibrateFewShot(loo, 4, 2.0));
}

TEST(Threshold, ImageScoreIsMeanOfTopPermille) {
  cv::Mat map(100, 100, CV_32F, cv::Scalar(1));  // 10000 px -> top 10
  for (int i = 0; i < 10; ++i) map.at<float>(i, 0) = 5.f;
  map.at<float>(50, 50) = 100.f;  // one hot pixel among the top 10
  EXPECT_NEAR(ImageScore(map), (9 * 5.0 + 100.0) / 10, 1e-4);
  cv::Mat tiny(2, 2, CV_32F, cv::Scalar(3));
  tiny.at<float>(0, 0) = 7;
  EXPECT_NEAR(ImageScore(tiny), 7.0, 1e-6);  // at least one pixel
}

TEST(Threshold, BatchRuleFollowsTheLowGroupWhateverItsShare) {
  // A tight group of good parts around 1.0 and defects around 2.0, in two proportions: the
  // threshold sits just above the good group both times.
  for (int goods : {5, 30}) {
    std::vector<double> s;
    for (int i = 0; i < goods; ++i) s.push_back(1.0 + 0.01 * (i % 5));
    for (int i = 0; i < 15; ++i) s.push_back(2.0 + 0.05 * (i % 3));
    const double t = CalibrateBatch(s, 2.0);
    EXPECT_GT(t, 1.04) << goods;
    EXPECT_LT(t, 1.2) << goods;
  }
  EXPECT_NEAR(CalibrateBatch({3.0}, 0.0), 3.0, 1e-9);
}

}  // namespace
}  // namespace zeroqc
