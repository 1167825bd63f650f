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

double CalibrateFewShot(const std::vector<double>& loo, size_t references, double sigmas) {
  if (references < 2) return Median(loo) * (1.0 + 0.35 * sigmas);
  return CalibrateThreshold(loo, sigmas * std::clamp(double(references) / 32.0, 0.25, 1.0));
}

double CalibrateBatch(std::vector<double> s, double sigmas) {
  std::vector<double> l;
  for (double v : s) l.push_back(std::log(std::max(v, 1e-12)));
  std::sort(l.begin(), l.end());
  const size_t n = l.size();
  size_t cut = n;  // lower group: l[0, cut)
  if (n >= 4) {
    std::vector<double> prefix(n + 1, 0);
    for (size_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + l[i];
    double best = -1;
    for (size_t i = 2; i + 1 < n; ++i) {  // both groups keep at least two scores
      const double w = double(i) / n, ma = prefix[i] / i, mb = (prefix[n] - prefix[i]) / (n - i);
      const double between = w * (1 - w) * (ma - mb) * (ma - mb);
      if (between > best) best = between, cut = i;
    }
  }
  std::vector<double> low(l.begin(), l.begin() + cut);
  const double m = Median(low);
  std::vector<double> dev;
  for (double v : low) dev.push_back(std::abs(v - m));
  return std::exp(m + sigmas * std::max(1.4826 * Median(dev), 0.02));
}

}  // namespace zeroqc
