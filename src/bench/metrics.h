// Evaluation metrics, NOK (defective) as the positive class, as the reference design reports them.
#pragma once

#include <cmath>
#include <vector>

#include <opencv2/core.hpp>

namespace zeroqc {

struct Confusion {
  int tp = 0, fp = 0, tn = 0, fn = 0;
  void Add(bool actual_nok, bool predicted_nok);
};

// A ratio whose denominator is zero (an empty class) is NaN, not a made-up 0 or 1.
struct Classification {
  double accuracy, precision, recall, specificity, f1, balanced_accuracy;
};
Classification Classify(const Confusion& c);

// Area under the ROC curve of scores (higher = more likely NOK); tied scores count one half.
// NaN when either class is empty.
double Auroc(const std::vector<double>& scores, const std::vector<bool>& is_nok);

// The highest balanced accuracy any threshold reaches ("NOK when score > t", t swept over every
// gap between distinct scores). With the balanced accuracy at the engine's own threshold it gives
// the calibration gap: how much a perfect threshold would add to what the engine chose itself.
// NaN when either class is empty.
double BestBalancedAccuracy(const std::vector<double>& scores, const std::vector<bool>& is_nok);

// Where that best balanced accuracy is reached: a threshold halfway between the two neighbouring
// distinct scores it falls between (the lowest such threshold when several tie). NaNs when either
// class is empty.
struct ThresholdChoice {
  double threshold = std::nan(""), balanced_accuracy = std::nan("");
};
ThresholdChoice BestThreshold(const std::vector<double>& scores, const std::vector<bool>& is_nok);

// ROC points (fpr, tpr) from (0,0) to (1,1), one per distinct score threshold.
std::vector<cv::Point2d> RocCurve(const std::vector<double>& scores, const std::vector<bool>& is_nok);

// Pixel-level AUROC over all images: maps are CV_32F anomaly maps, masks CV_8U (non-zero =
// defect), each pair the same size. Scores are binned into `bins` levels for memory.
double PixelAuroc(const std::vector<cv::Mat>& maps, const std::vector<cv::Mat>& masks, int bins = 1000);

// Per-region overlap (PRO): for thresholds swept from high to low, the mean over ground-truth
// regions of the share of each region flagged, against the false-positive rate on defect-free
// pixels; the area under that curve up to `max_fpr`, divided by `max_fpr` (1 = perfect).
double Pro(const std::vector<cv::Mat>& maps, const std::vector<cv::Mat>& masks, double max_fpr = 0.3,
           int steps = 200);

// The p-th percentile (0..100) of `values`, linearly interpolated between order statistics
// (NumPy's default). NaN for no values.
double Percentile(std::vector<double> values, double p);

// A latency distribution: order statistics and a histogram of `bins` equal-width bins from min
// to max (edges has bins + 1 entries).
// NaN-aware mean and sample standard deviation (over runs, seeds); NaN when no value is finite.
struct MeanSd {
  double mean = std::nan(""), sd = std::nan("");
};
MeanSd Aggregate(const std::vector<double>& values);

struct LatencyStats {
  double min = 0, p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
  std::vector<double> edges;
  std::vector<int> counts;
};
LatencyStats Latency(const std::vector<double>& ms, int bins = 20);

}  // namespace zeroqc
