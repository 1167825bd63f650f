#include "bench/metrics.h"

#include <cmath>

#include <gtest/gtest.h>

namespace zeroqc {
namespace {

TEST(Metrics, ConfusionRatiosByHand) {
  Confusion c;  // 29 caught, 1 missed, 11 passed, 1 false alarm
  for (int i = 0; i < 29; ++i) c.Add(true, true);
  c.Add(true, false);
  for (int i = 0; i < 11; ++i) c.Add(false, false);
  c.Add(false, true);
  auto m = Classify(c);
  EXPECT_DOUBLE_EQ(m.accuracy, 40.0 / 42);
  EXPECT_DOUBLE_EQ(m.precision, 29.0 / 30);
  EXPECT_DOUBLE_EQ(m.recall, 29.0 / 30);
  EXPECT_DOUBLE_EQ(m.specificity, 11.0 / 12);
  EXPECT_DOUBLE_EQ(m.f1, 58.0 / 60);
  EXPECT_DOUBLE_EQ(m.balanced_accuracy, (29.0 / 30 + 11.0 / 12) / 2);
}

TEST(Metrics, AllCorrectIsOneEverywhere) {
  Confusion c{3, 0, 2, 0};
  auto m = Classify(c);
  for (double v : {m.accuracy, m.precision, m.recall, m.specificity, m.f1, m.balanced_accuracy}) EXPECT_EQ(v, 1.0);
}

TEST(Metrics, EmptyClassGivesNaNNotAGuess) {
  Confusion only_defects{4, 0, 0, 1};
  auto m = Classify(only_defects);
  EXPECT_DOUBLE_EQ(m.recall, 0.8);
  EXPECT_TRUE(std::isnan(m.specificity));
  EXPECT_TRUE(std::isnan(m.balanced_accuracy));
  Confusion none{};
  EXPECT_TRUE(std::isnan(Classify(none).accuracy));
  EXPECT_TRUE(std::isnan(Auroc({0.3, 0.5}, {true, true})));
}

TEST(Metrics, AurocWithTies) {
  EXPECT_DOUBLE_EQ(Auroc({0.9, 0.8, 0.2, 0.1}, {true, true, false, false}), 1.0);
  EXPECT_DOUBLE_EQ(Auroc({0.1, 0.2, 0.8, 0.9}, {true, true, false, false}), 0.0);
  EXPECT_DOUBLE_EQ(Auroc({1, 1}, {true, false}), 0.5);
  // pos {0.8, 0.4} vs neg {0.4, 0.1}: 1 + 1 + 0.5 + 1 of 4 pairs
  EXPECT_DOUBLE_EQ(Auroc({0.8, 0.4, 0.4, 0.1}, {true, true, false, false}), 0.875);
}

TEST(Metrics, BestThresholdLiesBetweenTheScoresItSeparates) {
  const auto t = BestThreshold({1, 2, 9, 10}, {false, false, true, true});
  EXPECT_DOUBLE_EQ(t.threshold, 5.5);
  EXPECT_DOUBLE_EQ(t.balanced_accuracy, 1.0);
  const auto m = BestThreshold({1, 2, 3, 2.5, 4, 5}, {false, false, false, true, true, true});
  EXPECT_NEAR(m.balanced_accuracy, 5.0 / 6, 1e-12);
  EXPECT_DOUBLE_EQ(m.threshold, 2.25);  // 2.5 and up NOK: one good part (3) rejected, the lowest of the ties
  EXPECT_TRUE(std::isnan(BestThreshold({1, 2}, {true, true}).threshold));
}

TEST(Metrics, BestBalancedAccuracyOverEveryThreshold) {
  // good: 1 2 3, defective: 2.5 4 5 -> "score > 2" gives tpr 1, fpr 1/3: (1 + 2/3) / 2.
  EXPECT_NEAR(BestBalancedAccuracy({1, 2, 3, 2.5, 4, 5}, {false, false, false, true, true, true}), 5.0 / 6, 1e-12);
  EXPECT_NEAR(BestBalancedAccuracy({1, 2, 9, 10}, {false, false, true, true}), 1.0, 1e-12);
  EXPECT_NEAR(BestBalancedAccuracy({3, 3, 3}, {false, true, true}), 0.5, 1e-12);  // ties: nothing separates
  EXPECT_TRUE(std::isnan(BestBalancedAccuracy({1, 2}, {true, true})));
}

TEST(Metrics, RocCurveRunsFromOriginToOne) {
  auto roc = RocCurve({0.8, 0.4, 0.4, 0.1}, {true, true, false, false});
  ASSERT_EQ(roc.size(), 4u);  // origin + 3 distinct scores
  EXPECT_EQ(roc.front(), cv::Point2d(0, 0));
  EXPECT_EQ(roc[1], cv::Point2d(0, 0.5));
  EXPECT_EQ(roc[2], cv::Point2d(0.5, 1));  // the tie moves both at once
  EXPECT_EQ(roc.back(), cv::Point2d(1, 1));
}

TEST(Metrics, PixelAurocAndPro) {
  cv::Mat mask = cv::Mat::zeros(40, 40, CV_8U);
  mask(cv::Rect(5, 5, 10, 10)).setTo(255);
  mask(cv::Rect(25, 25, 4, 4)).setTo(255);  // a second, small region
  cv::Mat perfect;
  mask.convertTo(perfect, CV_32F, 1.0 / 255);
  cv::Mat inverted = 1.0 - perfect;
  cv::Mat flat(40, 40, CV_32F, cv::Scalar(0.5));
  EXPECT_NEAR(PixelAuroc({perfect}, {mask}), 1.0, 1e-9);
  EXPECT_NEAR(PixelAuroc({inverted}, {mask}), 0.0, 1e-9);
  EXPECT_NEAR(PixelAuroc({flat}, {mask}), 0.5, 1e-9);
  EXPECT_NEAR(Pro({perfect}, {mask}), 1.0, 0.02);
  // An uninformative map flags everything at once: PRO rises along the diagonal, area 0.3^2/2.
  cv::Mat noisy = flat.clone();
  noisy.at<float>(0, 0) = 0.f;  // gives the sweep a range
  EXPECT_NEAR(Pro({noisy}, {mask}), 0.15, 0.01);
  EXPECT_TRUE(std::isnan(Pro({perfect}, {cv::Mat::zeros(40, 40, CV_8U)})));
}

TEST(Metrics, PercentileInterpolatesLikeNumpy) {
  std::vector<double> v = {40, 10, 30, 20};  // sorted 10 20 30 40
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 10);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 25);
  EXPECT_DOUBLE_EQ(Percentile(v, 90), 37);  // position 2.7
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 40);
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7);
  EXPECT_TRUE(std::isnan(Percentile({}, 50)));
}

TEST(Metrics, LatencyHistogramCountsEveryValueOnce) {
  auto s = Latency({100, 110, 120, 130, 200}, 4);  // bins of 25 ms from 100
  EXPECT_EQ(s.min, 100);
  EXPECT_EQ(s.max, 200);
  EXPECT_DOUBLE_EQ(s.mean, 132);
  EXPECT_DOUBLE_EQ(s.p50, 120);
  ASSERT_EQ(s.edges.size(), 5u);
  EXPECT_DOUBLE_EQ(s.edges[1], 125);
  EXPECT_EQ(s.counts, (std::vector<int>{3, 1, 0, 1}));  // the maximum falls in the last bin
  auto flat = Latency({5, 5, 5}, 3);
  EXPECT_EQ(flat.counts, (std::vector<int>{3, 0, 0}));
}

}  // namespace
}  // namespace zeroqc
