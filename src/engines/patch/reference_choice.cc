#include "engines/patch/reference_choice.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <numeric>

#include "engines/patch/knn.h"
#include "engines/patch/threshold.h"

namespace zeroqc {
namespace {

// Layers weigh alike: each layer's part of the mean patch is normalised on its own.
std::vector<float> MeanPatch(const MemoryBank& b) {
  cv::Mat mean;
  cv::reduce(b.rows, mean, 0, cv::REDUCE_AVG);
  std::vector<float> out(mean.begin<float>(), mean.end<float>());
  for (int k = 0, c = 0; k < int(b.Blocks().size()); c += b.Blocks()[k++]) {
    double n = 0;
    for (int j = c; j < c + b.Blocks()[k]; ++j) n += double(out[j]) * out[j];
    n = std::sqrt(std::max(n, 1e-12));
    for (int j = c; j < c + b.Blocks()[k]; ++j) out[j] = float(out[j] / n);
  }
  return out;
}

}  // namespace

StatusOr<std::vector<ImageLook>> DescribeLooks(Backbone& backbone, const std::vector<std::filesystem::path>& paths,
                                               ImageLimits limits, const std::function<void(size_t, size_t)>& progress) {
  limits.decode_side = 1024;  // the engine's own reduced decoding: the backbone sees 416 px
  std::vector<ImageLook> looks;
  for (size_t i = 0; i < paths.size(); ++i) {
    auto img = LoadImage(paths[i], limits);
    if (!img.ok()) {
      std::fprintf(stderr, "skipped %s: %s\n", paths[i].c_str(), img.status().message().c_str());
      continue;
    }
    auto maps = backbone.Extract(img->bgr);
    if (!maps.ok()) return Status(maps.status().code(), paths[i].string() + ": " + maps.status().message());
    ImageLook look{paths[i], {}, {}};
    look.bank.Add(MakePatchGrid(*maps, PatchOptions{}));
    look.bank.UpdateNorms();
    look.descriptor = MeanPatch(look.bank);
    looks.push_back(std::move(look));
    if (progress) progress(i + 1, paths.size());
  }
  return looks;
}

double LookDistance(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return std::sqrt(d);
}

std::vector<std::vector<size_t>> LookAlikeGroups(const std::vector<std::vector<float>>& descriptors, double gap) {
  const size_t n = descriptors.size();
  if (n < 3) {  // too few to tell a group's spread from a gap
    std::vector<size_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    return {all};
  }
  std::vector<std::vector<double>> d(n, std::vector<double>(n, 0));
  std::vector<double> nearest(n, std::numeric_limits<double>::infinity());
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j) {
      d[i][j] = d[j][i] = LookDistance(descriptors[i], descriptors[j]);
      nearest[i] = std::min(nearest[i], d[i][j]), nearest[j] = std::min(nearest[j], d[i][j]);
    }
  std::vector<double> sorted = nearest;
  std::nth_element(sorted.begin(), sorted.begin() + n / 2, sorted.end());
  const double link = gap * sorted[n / 2];
  std::vector<size_t> group(n);
  std::iota(group.begin(), group.end(), 0);
  std::function<size_t(size_t)> root = [&](size_t i) { return group[i] == i ? i : group[i] = root(group[i]); };
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j)
      if (d[i][j] < link) group[root(i)] = root(j);
  std::map<size_t, std::vector<size_t>> by_root;
  for (size_t i = 0; i < n; ++i) by_root[root(i)].push_back(i);
  std::vector<std::vector<size_t>> out;
  for (auto& [r, members] : by_root) out.push_back(std::move(members));
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  return out;
}

namespace {

// Each photo's patches against those of the `peers` photos nearest by descriptor, a patch counting
// by its nearest match among them; the photo's score is its worst patch.
std::vector<double> LookAlikeScores(const std::vector<const ImageLook*>& looks, size_t peers) {
  std::vector<double> scores(looks.size());
  for (size_t i = 0; i < looks.size(); ++i) {
    std::vector<std::pair<double, size_t>> near;
    for (size_t j = 0; j < looks.size(); ++j)
      if (j != i) near.emplace_back(LookDistance(looks[i]->descriptor, looks[j]->descriptor), j);
    std::sort(near.begin(), near.end());
    std::vector<float> best(size_t(looks[i]->bank.rows.rows), std::numeric_limits<float>::max());
    for (size_t k = 0; k < std::min(peers, near.size()); ++k) {
      const auto d = NearestDistances(looks[i]->bank.rows, looks[near[k].second]->bank);
      for (size_t p = 0; p < d.size(); ++p) best[p] = std::min(best[p], d[p]);
    }
    scores[i] = best.empty() ? 0 : *std::max_element(best.begin(), best.end());
  }
  return scores;
}

}  // namespace

ReferenceChoice ChooseReferences(const std::vector<const ImageLook*>& looks, size_t count, size_t peers) {
  ReferenceChoice c;
  if (looks.empty() || count == 0) return c;
  c.scores = LookAlikeScores(looks, std::max<size_t>(1, peers));
  c.threshold = looks.size() >= 2 ? CalibrateBatch(c.scores, 2.0) : c.scores[0];
  std::vector<size_t> order(looks.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return c.scores[a] < c.scores[b]; });
  for (size_t i : order)
    if (c.scores[i] <= c.threshold || c.candidates.size() < count) c.candidates.push_back(i);
  c.chosen.push_back(order[0]);  // the most typical candidate
  std::vector<double> nearest(looks.size(), std::numeric_limits<double>::infinity());
  while (c.chosen.size() < std::min(count, c.candidates.size())) {
    size_t best = c.candidates[0];
    double far = -1;
    for (size_t k : c.candidates) {
      nearest[k] = std::min(nearest[k], LookDistance(looks[k]->descriptor, looks[c.chosen.back()]->descriptor));
      if (nearest[k] > far) far = nearest[k], best = k;
    }
    c.chosen.push_back(best);
  }
  return c;
}

ReferenceChoice ChooseReferences(const std::vector<ImageLook>& looks, size_t count, size_t peers) {
  std::vector<const ImageLook*> p;
  for (const auto& l : looks) p.push_back(&l);
  return ChooseReferences(p, count, peers);
}

std::vector<bool> UnlikeReferences(const std::vector<double>& loo, double threshold, double* median_out) {
  std::vector<double> sorted = loo;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted.empty() ? 0 : sorted[sorted.size() / 2];
  if (median_out) *median_out = median;
  std::vector<bool> unlike;
  for (double s : loo) unlike.push_back(s > threshold && s > kOutlierRatio * median);
  return unlike;
}

}  // namespace zeroqc
