#include "engines/patch/threshold.h"

#include <algorithm>
#include <cmath>

namespace zeroqc {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

double ImageScore(const cv::Mat& map) {
  cv::Mat flat = map.reshape(1, 1).clone();
  const int k = std::max(1, flat.cols / 1000);
  std::nth_element(flat.ptr<float>(), flat.ptr<float>() + k - 1, flat.ptr<float>() + flat.cols, std::greater<float>());
  return cv::mean(flat.colRange(0, k))[0];
}

double CalibrateThreshold(std::vector<double> s, double sigmas) {
  const double median = Median(s);
  std::vector<double> dev;
  for (double v : s) dev.push_back(std::abs(v - median));
  const double spread = std::max(1.4826 * Median(dev), 0.05 * median);
  return median + sigmas * spread;
}

double CalibrateFewShot(const std::vector<double>& loo, const std::vector<double>& jitter, size_t references,
                        double sigmas) {
  const double loo_rule = CalibrateThreshold(loo, sigmas);
  if (references < 2 || jitter.empty()) return loo_rule;
  const double w = std::min(1.0, double(references) / 32.0);
  const double bracket = std::sqrt(Median(loo) * Median(jitter)) * (1.0 + 0.05 * sigmas);
  return std::exp(w * std::log(loo_rule) + (1.0 - w) * std::log(bracket));
}

double CalibrateBatch(std::vector<double> s, double sigmas) {
  std::sort(s.begin(), s.end());
  const double pos = 0.1 * (s.size() - 1);  // the 10th percentile, interpolated
  const size_t i = size_t(pos);
  const double p10 = i + 1 < s.size() ? s[i] + (pos - i) * (s[i + 1] - s[i]) : s[i];
  return p10 * (1.0 + 0.05 * sigmas);
}

}  // namespace zeroqc
