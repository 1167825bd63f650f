#include "bench/dataset.h"

#include <algorithm>
#include <cmath>

#include "image/decode.h"

namespace zeroqc {

bool Dataset::has_masks() const {
  return std::any_of(samples.begin(), samples.end(), [](const Sample& s) { return !s.mask.empty(); });
}

StatusOr<Dataset> LoadDataset(const std::filesystem::path& root) {
  namespace fs = std::filesystem;
  Dataset d;
  d.root = std::filesystem::weakly_canonical(std::filesystem::absolute(root));
  if (!fs::is_directory(root)) return InvalidArgument(root.string() + " is not a folder");
  auto pool = ListImages(root / "train" / "good");
  if (!pool.ok())
    return InvalidArgument("reference pool: " + pool.status().message() +
                           " (expected the MVTec layout: train/good, test/<type>, ground_truth/<type>)");
  d.pool = *pool;
  if (!fs::is_directory(root / "test")) return InvalidArgument((root / "test").string() + " is missing: it holds the QC images, one folder per type");
  std::vector<fs::path> types;
  for (const auto& e : fs::directory_iterator(root / "test"))
    if (e.is_directory()) types.push_back(e.path());
  std::sort(types.begin(), types.end());
  for (const auto& t : types) {
    auto images = ListImages(t);
    if (!images.ok()) continue;  // an empty type folder holds nothing to score
    const std::string type = t.filename().string();
    for (const auto& img : *images) {
      Sample s{img, type, type != "good", {}};
      auto mask = root / "ground_truth" / type / (img.stem().string() + "_mask.png");
      if (s.nok && fs::exists(mask)) s.mask = mask;
      d.samples.push_back(std::move(s));
    }
  }
  if (d.samples.empty()) return InvalidArgument("no QC images under " + (root / "test").string());
  return d;
}

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<std::filesystem::path> DrawShots(const std::vector<std::filesystem::path>& pool, size_t k,
                                             uint64_t seed) {
  std::vector<std::filesystem::path> v = pool;
  std::sort(v.begin(), v.end());
  if (k >= v.size()) return v;
  uint64_t state = seed;
  for (size_t i = 0; i < k; ++i) {  // partial Fisher-Yates: the first k slots are the draw
    size_t j = i + SplitMix64(state) % (v.size() - i);
    std::swap(v[i], v[j]);
  }
  v.resize(k);
  std::sort(v.begin(), v.end());
  return v;
}

StatusOr<Dataset> WithDefectShare(const Dataset& d, double share, uint64_t seed) {
  if (!(share > 0 && share < 1))
    return InvalidArgument("the defect share is a fraction between 0 and 1 (exclusive), got " + std::to_string(share));
  std::vector<std::filesystem::path> defects;
  size_t good = 0;
  for (const auto& s : d.samples)
    if (s.nok) defects.push_back(s.image);
    else ++good;
  if (good == 0 || defects.empty())
    return InvalidArgument("a defect share needs good and defective test images; " + d.root.string() + "/test has " +
                           std::to_string(good) + " good and " + std::to_string(defects.size()) + " defective");
  const size_t want = std::max<size_t>(1, size_t(std::lround(double(good) * share / (1 - share))));
  const auto drawn = DrawShots(defects, want, seed);
  Dataset out = d;
  out.samples.clear();
  for (const auto& s : d.samples)
    if (!s.nok || std::binary_search(drawn.begin(), drawn.end(), s.image)) out.samples.push_back(s);
  return out;
}

}  // namespace zeroqc
