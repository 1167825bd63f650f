#include "engines/patch/memory_bank.h"

#include <unistd.h>

#include <fstream>
#include <limits>
#include <random>
#include <thread>

#include <opencv2/imgproc.hpp>

#include "core/parallel.h"

namespace zeroqc {
namespace {

// Average groups of adjacent channels so that every layer contributes `dim` channels.
cv::Mat ReduceChannels(const cv::Mat& chw, int dim) {
  if (dim <= 0 || chw.rows <= dim) return chw;
  cv::Mat out(dim, chw.cols, CV_32F);
  for (int d = 0; d < dim; ++d) {
    int a = d * chw.rows / dim, b = (d + 1) * chw.rows / dim;
    cv::reduce(chw.rowRange(a, b), out.row(d), 0, cv::REDUCE_AVG);
  }
  return out;
}

constexpr uint32_t kMagic = 0x5a514234;  // "ZQB4": layer blocks, no jittered scores, foreground direction

}  // namespace

PatchGrid MakePatchGrid(const std::vector<FeatureMap>& maps, const PatchOptions& opt) {
  const int gh = maps.front().height, gw = maps.front().width;
  std::vector<cv::Mat> parts;
  for (const auto& m : maps) {
    cv::Mat reduced = ReduceChannels(m.data, opt.layer_dim);
    cv::Mat out(reduced.rows, gh * gw, CV_32F);
    for (int c = 0; c < reduced.rows; ++c) {
      cv::Mat plane(m.height, m.width, CV_32F, reduced.ptr<float>(c));
      cv::Mat smoothed, dst(gh, gw, CV_32F, out.ptr<float>(c));
      if (opt.neighbourhood > 1)
        cv::blur(plane, smoothed, {opt.neighbourhood, opt.neighbourhood}, {-1, -1}, cv::BORDER_REFLECT);
      else
        smoothed = plane;
      if (m.height == gh && m.width == gw) smoothed.copyTo(dst);
      else cv::resize(smoothed, dst, {gw, gh}, 0, 0, cv::INTER_LINEAR);
    }
    parts.push_back(out);
  }
  PatchGrid g;
  for (auto& p : parts) {
    g.blocks.push_back(p.rows);
    // Cosine distance per layer: a channel's scale no longer decides the match, and no layer
    // outweighs another (the ranking improved on every set of the suite, docs/BENCHMARKS.md).
    for (int i = 0; i < p.cols; ++i) {
      double n = cv::norm(p.col(i));
      if (n > 1e-12) p.col(i) *= 1.0 / n;
    }
  }
  cv::Mat all;
  cv::vconcat(parts, all);
  g.descriptors = all.t();
  g.grid_h = gh;
  g.grid_w = gw;
  return g;
}

void MemoryBank::Add(const PatchGrid& g) { Add(std::vector<PatchGrid>{g}); }  // cv::Mat copies share their data

void MemoryBank::Add(const std::vector<PatchGrid>& grids) {
  if (grids.empty()) return;
  int total = rows.rows;
  for (const auto& g : grids) total += g.descriptors.rows;
  cv::Mat all(total, grids.front().descriptors.cols, CV_32F);
  if (!rows.empty()) rows.copyTo(all.rowRange(0, rows.rows));
  int at = rows.rows;
  for (const auto& g : grids) {
    g.descriptors.copyTo(all.rowRange(at, at + g.descriptors.rows));
    ranges.emplace_back(at, at + g.descriptors.rows);
    at += g.descriptors.rows;
  }
  rows = all;
  blocks = grids.back().blocks;
  grid_h = grids.back().grid_h;
  grid_w = grids.back().grid_w;
}

void MemoryBank::UpdateNorms() {
  const auto b = Blocks();
  sq_norms.create(rows.rows, int(b.size()), CV_32F);
  for (int i = 0; i < rows.rows; ++i)
    for (int k = 0, c = 0; k < int(b.size()); c += b[k++]) {
      cv::Mat part = rows.row(i).colRange(c, c + b[k]);
      sq_norms.at<float>(i, k) = static_cast<float>(part.dot(part));
    }
}

void CoresetSubsample(MemoryBank& bank, double ratio, uint64_t seed, int dims) {
  if (ratio >= 1.0 || bank.rows.empty()) return;
  const int proj_dim = std::min(dims, bank.rows.cols);
  cv::Mat proj(bank.rows.cols, proj_dim, CV_32F);
  cv::RNG rng(seed + 1);
  rng.fill(proj, cv::RNG::NORMAL, 0, 1);
  cv::Mat low = bank.rows * proj;
  // Greedy k-centre per reference, the references in parallel (each is independent).
  std::vector<std::vector<int>> chosen(bank.ranges.size());
  ParallelFor(bank.ranges.size(), int(std::max(1u, std::thread::hardware_concurrency())), [&](size_t r) {
    const auto [a, b] = bank.ranges[r];
    const int n = b - a, k = std::max(1, static_cast<int>(n * ratio));
    cv::Mat x = low.rowRange(a, b);
    std::vector<float> mind(n, std::numeric_limits<float>::max());
    int next = 0;
    for (int it = 0; it < k; ++it) {
      chosen[r].push_back(next);
      const float* c = x.ptr<float>(next);
      int best = 0;
      for (int i = 0; i < n; ++i) {
        const float* row = x.ptr<float>(i);
        float d = 0;
        for (int j = 0; j < proj_dim; ++j) d += (row[j] - c[j]) * (row[j] - c[j]);
        mind[i] = std::min(mind[i], d);
        if (mind[i] > mind[best]) best = i;
      }
      next = best;
    }
  });
  int total = 0;
  for (const auto& c : chosen) total += int(c.size());
  cv::Mat kept_rows(total, bank.rows.cols, CV_32F);
  std::vector<std::pair<int, int>> kept_ranges;
  int at = 0;
  for (size_t r = 0; r < chosen.size(); ++r) {
    const int begin = at;
    for (int i : chosen[r]) bank.rows.row(bank.ranges[r].first + i).copyTo(kept_rows.row(at++));
    kept_ranges.emplace_back(begin, at);
  }
  bank.rows = kept_rows;
  bank.ranges = kept_ranges;
  bank.UpdateNorms();
}

Status MemoryBank::Save(const std::filesystem::path& path) const {
  std::filesystem::create_directories(path.parent_path());
  auto tmp = path;  // unique per process: two builders of the same bank must not share it
  tmp += "." + std::to_string(::getpid()) + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    auto put = [&](auto v) { out.write(reinterpret_cast<const char*>(&v), sizeof(v)); };
    put(kMagic);
    put(int32_t(rows.rows)), put(int32_t(rows.cols)), put(int32_t(grid_h)), put(int32_t(grid_w));
    put(int32_t(blocks.size()));
    for (int b : blocks) put(int32_t(b));
    put(int32_t(ranges.size()));
    for (auto [a, b] : ranges) put(int32_t(a)), put(int32_t(b));
    put(int32_t(loo_scores.size()));
    for (double s : loo_scores) put(s);
    put(threshold);
    cv::Mat r = rows.isContinuous() ? rows : rows.clone();
    out.write(reinterpret_cast<const char*>(r.data), static_cast<std::streamsize>(r.total() * sizeof(float)));
    put(int32_t(foreground.cols));  // 0: no mask; else 2 rows
    if (!foreground.empty()) {
      cv::Mat f = foreground.clone();
      out.write(reinterpret_cast<const char*>(f.data), static_cast<std::streamsize>(f.total() * sizeof(float)));
    }
    if (!out) return IoError("cannot write memory bank " + tmp.string());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);  // atomic: readers never see a half-written bank
  if (ec) return IoError("cannot move memory bank into place: " + ec.message());
  return Status::Ok();
}

StatusOr<MemoryBank> MemoryBank::Load(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("no cached memory bank at " + path.string());
  auto get = [&](auto& v) { in.read(reinterpret_cast<char*>(&v), sizeof(v)); return bool(in); };
  uint32_t magic = 0;
  int32_t m = 0, d = 0, gh = 0, gw = 0, nr = 0, nl = 0;
  if (!get(magic) || magic != kMagic) return Corrupt(path.string() + " is not a zeroqc memory bank");
  get(m), get(d), get(gh), get(gw);
  int32_t nb = 0;
  get(nb);
  if (!in || nb < 0 || nb > 64) return Corrupt(path.string() + ": bad header");
  MemoryBank bank;
  int block_sum = 0;
  for (int i = 0; i < nb; ++i) {
    int32_t b = 0;
    get(b);
    if (b <= 0) return Corrupt(path.string() + ": bad header");
    bank.blocks.push_back(b);
    block_sum += b;
  }
  get(nr);
  if (!in || m < 0 || d <= 0 || nr < 0 || nr > 1'000'000 || (nb && block_sum != d)) return Corrupt(path.string() + ": bad header");
  bank.grid_h = gh, bank.grid_w = gw;
  for (int i = 0; i < nr; ++i) {
    int32_t a = 0, b = 0;
    get(a), get(b);
    bank.ranges.emplace_back(a, b);
  }
  get(nl);
  if (!in || nl < 0 || nl > 1'000'000) return Corrupt(path.string() + ": bad header");
  bank.loo_scores.resize(nl);
  for (auto& s : bank.loo_scores) get(s);
  get(bank.threshold);
  bank.rows.create(m, d, CV_32F);
  in.read(reinterpret_cast<char*>(bank.rows.data), static_cast<std::streamsize>(bank.rows.total() * sizeof(float)));
  if (!in) return Corrupt(path.string() + " is truncated");
  int32_t fw = 0;
  if (!get(fw) || fw < 0 || fw > d) return Corrupt(path.string() + " is truncated");
  if (fw > 0) {
    bank.foreground.create(2, fw, CV_32F);
    in.read(reinterpret_cast<char*>(bank.foreground.data), static_cast<std::streamsize>(bank.foreground.total() * sizeof(float)));
    if (!in) return Corrupt(path.string() + " is truncated");
  }
  bank.UpdateNorms();
  return bank;
}

}  // namespace zeroqc
