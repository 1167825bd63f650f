#include "bench/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <opencv2/imgproc.hpp>

namespace zeroqc {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
double Ratio(double a, double b) { return b == 0 ? kNaN : a / b; }

// Lowest and highest score over all maps.
std::pair<double, double> ScoreRange(const std::vector<cv::Mat>& maps) {
  double lo = std::numeric_limits<double>::max(), hi = std::numeric_limits<double>::lowest();
  for (const auto& m : maps) {
    double a, b;
    cv::minMaxLoc(m, &a, &b);
    lo = std::min(lo, a), hi = std::max(hi, b);
  }
  return {lo, hi};
}

}  // namespace

void Confusion::Add(bool actual, bool predicted) {
  if (actual) predicted ? ++tp : ++fn;
  else predicted ? ++fp : ++tn;
}

MeanSd Aggregate(const std::vector<double>& v) {
  std::vector<double> x;
  for (double d : v)
    if (std::isfinite(d)) x.push_back(d);
  MeanSd m;
  if (x.empty()) return m;
  double s = 0;
  for (double d : x) s += d;
  m.mean = s / x.size();
  double ss = 0;
  for (double d : x) ss += (d - m.mean) * (d - m.mean);
  m.sd = x.size() > 1 ? std::sqrt(ss / (x.size() - 1)) : 0.0;
  return m;
}

Classification Classify(const Confusion& c) {
  Classification m;
  m.accuracy = Ratio(c.tp + c.tn, c.tp + c.tn + c.fp + c.fn);
  m.precision = Ratio(c.tp, c.tp + c.fp);
  m.recall = Ratio(c.tp, c.tp + c.fn);
  m.specificity = Ratio(c.tn, c.tn + c.fp);
  m.f1 = Ratio(2.0 * c.tp, 2.0 * c.tp + c.fp + c.fn);
  m.balanced_accuracy = (m.recall + m.specificity) / 2;
  return m;
}

std::vector<cv::Point2d> RocCurve(const std::vector<double>& scores, const std::vector<bool>& is_nok) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  double pos = std::count(is_nok.begin(), is_nok.end(), true), neg = is_nok.size() - pos;
  std::vector<cv::Point2d> roc = {{0, 0}};
  double tp = 0, fp = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    for (; j < order.size() && scores[order[j]] == scores[order[i]]; ++j) is_nok[order[j]] ? ++tp : ++fp;
    roc.push_back({neg ? fp / neg : 0, pos ? tp / pos : 0});
    i = j;
  }
  return roc;
}

double Auroc(const std::vector<double>& scores, const std::vector<bool>& is_nok) {
  const auto n_nok = std::count(is_nok.begin(), is_nok.end(), true);
  if (n_nok == 0 || n_nok == static_cast<long>(is_nok.size())) return kNaN;
  // The trapezoid under the ROC, tie groups as diagonal steps, is the Mann-Whitney U with mid-ranks.
  const auto roc = RocCurve(scores, is_nok);
  double area = 0;
  for (size_t i = 1; i < roc.size(); ++i) area += (roc[i].x - roc[i - 1].x) * (roc[i].y + roc[i - 1].y) / 2;
  return area;
}

double BestBalancedAccuracy(const std::vector<double>& scores, const std::vector<bool>& is_nok) {
  const auto n_nok = std::count(is_nok.begin(), is_nok.end(), true);
  if (n_nok == 0 || n_nok == static_cast<long>(is_nok.size())) return kNaN;
  // Each ROC point is one threshold; balanced accuracy there is (tpr + 1 - fpr) / 2.
  double best = 0;
  for (const auto& p : RocCurve(scores, is_nok)) best = std::max(best, (p.y + 1 - p.x) / 2);
  return best;
}

ThresholdChoice BestThreshold(const std::vector<double>& scores, const std::vector<bool>& is_nok) {
  const auto n_nok = std::count(is_nok.begin(), is_nok.end(), true);
  const auto n_ok = static_cast<long>(is_nok.size()) - n_nok;
  if (n_nok == 0 || n_ok == 0) return {};
  std::vector<double> distinct = scores;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  // Candidates: below every score, between each pair of neighbours, and at the top (all OK).
  std::vector<double> cuts{distinct.front() - 1};
  for (size_t i = 0; i + 1 < distinct.size(); ++i) cuts.push_back((distinct[i] + distinct[i + 1]) / 2);
  cuts.push_back(distinct.back());
  ThresholdChoice best{kNaN, -1};
  for (double t : cuts) {
    long tp = 0, tn = 0;
    for (size_t i = 0; i < scores.size(); ++i) (is_nok[i] ? tp : tn) += (scores[i] > t) == is_nok[i];
    const double ba = (double(tp) / n_nok + double(tn) / n_ok) / 2;
    if (ba > best.balanced_accuracy + 1e-12) best = {t, ba};
  }
  return best;
}

double PixelAuroc(const std::vector<cv::Mat>& maps, const std::vector<cv::Mat>& masks, int bins) {
  const auto [lo, hi] = ScoreRange(maps);
  // Histograms of defect and normal pixels over score bins, then the ROC area bin by bin.
  std::vector<double> hp(bins, 0), hn(bins, 0);
  const double scale = hi > lo ? (bins - 1) / (hi - lo) : 0;
  for (size_t i = 0; i < maps.size(); ++i) {
    for (int y = 0; y < maps[i].rows; ++y) {
      const float* s = maps[i].ptr<float>(y);
      const uint8_t* g = masks[i].ptr<uint8_t>(y);
      for (int x = 0; x < maps[i].cols; ++x) (g[x] ? hp : hn)[int((s[x] - lo) * scale)] += 1;
    }
  }
  double pos = std::accumulate(hp.begin(), hp.end(), 0.0), neg = std::accumulate(hn.begin(), hn.end(), 0.0);
  if (pos == 0 || neg == 0) return kNaN;
  double area = 0, neg_below = 0;
  for (int b = 0; b < bins; ++b) {  // a defect pixel beats the normals below it, ties count half
    area += hp[b] * (neg_below + hn[b] / 2);
    neg_below += hn[b];
  }
  return area / (pos * neg);
}

double Pro(const std::vector<cv::Mat>& maps, const std::vector<cv::Mat>& masks, double max_fpr, int steps) {
  struct Gt {
    size_t image;
    cv::Mat region;
    double area;
  };
  std::vector<Gt> regions;
  double normal = 0;
  for (size_t i = 0; i < maps.size(); ++i) {
    cv::Mat labels;
    int n = cv::connectedComponents(masks[i] > 0, labels, 8, CV_32S);
    for (int l = 1; l < n; ++l) {
      cv::Mat r = labels == l;
      regions.push_back({i, r, double(cv::countNonZero(r))});
    }
    normal += masks[i].total() - cv::countNonZero(masks[i]);
  }
  if (regions.empty() || normal == 0) return kNaN;
  const auto [lo, hi] = ScoreRange(maps);
  // Sweep thresholds from high to low; integrate PRO over FPR with the trapezoid rule.
  double area = 0, prev_fpr = 0, prev_pro = 0;
  for (int s = 0; s <= steps; ++s) {
    const double t = hi - (hi - lo) * s / steps;
    double fp = 0, pro = 0;
    for (size_t i = 0; i < maps.size(); ++i) fp += cv::countNonZero((maps[i] > t) & (masks[i] == 0));
    for (const auto& g : regions) pro += cv::countNonZero((maps[g.image] > t) & g.region) / g.area;
    pro /= regions.size();
    double fpr = fp / normal;
    if (fpr >= max_fpr) {  // interpolate the last piece up to max_fpr
      const double w = fpr > prev_fpr ? (max_fpr - prev_fpr) / (fpr - prev_fpr) : 0;
      area += (max_fpr - prev_fpr) * (prev_pro + (prev_pro + w * (pro - prev_pro))) / 2;
      return area / max_fpr;
    }
    area += (fpr - prev_fpr) * (pro + prev_pro) / 2;
    prev_fpr = fpr, prev_pro = pro;
  }
  return (area + (max_fpr - prev_fpr) * prev_pro) / max_fpr;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const double pos = std::clamp(p, 0.0, 100.0) / 100.0 * double(v.size() - 1);
  const size_t lo = size_t(pos), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - double(lo)) * (v[hi] - v[lo]);
}

LatencyStats Latency(const std::vector<double>& ms, int bins) {
  LatencyStats s;
  if (ms.empty()) return s;
  auto [lo, hi] = std::minmax_element(ms.begin(), ms.end());
  s.min = *lo, s.max = *hi;
  s.p50 = Percentile(ms, 50), s.p90 = Percentile(ms, 90), s.p99 = Percentile(ms, 99);
  s.mean = std::accumulate(ms.begin(), ms.end(), 0.0) / double(ms.size());
  bins = std::max(1, bins);
  const double width = (s.max - s.min) / bins;
  for (int i = 0; i <= bins; ++i) s.edges.push_back(s.min + width * i);
  s.counts.assign(bins, 0);
  for (double x : ms) ++s.counts[width > 0 ? std::min(bins - 1, int((x - s.min) / width)) : 0];
  return s;
}

}  // namespace zeroqc
