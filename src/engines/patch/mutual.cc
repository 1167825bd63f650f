#include "engines/patch/mutual.h"

#include <algorithm>
#include <cmath>

#include "engines/patch/knn.h"

namespace zeroqc {

std::vector<int> Peers(int self, int n, int count) {
  std::vector<int> others;
  for (int i = 0; i < n; ++i)
    if (i != self) others.push_back(i);
  if (count <= 0 || int(others.size()) <= count) return others;
  std::vector<int> out;
  // Evenly spaced, offset by the image's own index so that peers differ between neighbours.
  const double step = double(others.size()) / count;
  for (int k = 0; k < count; ++k) out.push_back(others[size_t(k * step + self % std::max(1, int(step))) % others.size()]);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<float> MutualDistances(const cv::Mat& query, const std::vector<const MemoryBank*>& peers, double fraction,
                                   int anchor) {
  std::vector<std::vector<float>> per_peer;
  for (const MemoryBank* b : peers) per_peer.push_back(NearestDistances(query, *b));
  const size_t keep = std::max<size_t>(1, size_t(std::lround(fraction * per_peer.size())));
  std::vector<float> out(query.rows, 0.f), column(per_peer.size());
  for (int p = 0; p < query.rows; ++p) {
    for (size_t j = 0; j < per_peer.size(); ++j) column[j] = per_peer[j][p];
    std::partial_sort(column.begin(), column.begin() + std::min(keep, column.size()), column.end());
    double s = 0;
    for (size_t j = 0; j < std::min(keep, column.size()); ++j) s += column[j];
    out[p] = float(s / std::min(keep, column.size()));
    if (anchor >= 0) out[p] = std::min(out[p], per_peer[anchor][p]);
  }
  return out;
}

}  // namespace zeroqc
