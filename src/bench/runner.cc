#include "bench/runner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <optional>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "bench/types.h"
#include "core/parallel.h"

namespace zeroqc {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

cv::Mat ScoreMap(const Inspection& insp, int side) {
  const InspectionResult& r = insp.result;
  if (r.error || r.width <= 0 || r.height <= 0) return {};
  const double scale = std::min(1.0, double(side) / std::max(r.width, r.height));
  const cv::Size size(std::max(1, int(std::lround(r.width * scale))), std::max(1, int(std::lround(r.height * scale))));
  cv::Mat m;
  if (!insp.heatmap.empty()) {
    const bool shrink = size.width < insp.heatmap.cols;  // the engine's map may be smaller than the image
    cv::resize(insp.heatmap, m, size, 0, 0, shrink ? cv::INTER_AREA : cv::INTER_LINEAR);
    return m;
  }
  const double unit = r.threshold > 0 ? r.threshold : 1.0;
  m = cv::Mat::zeros(size, CV_32F);
  for (const auto& o : r.objects) {
    if (o.qc != "NOK" || !o.has_box) continue;
    cv::Rect box(cv::Point(int(o.box.x_min * scale), int(o.box.y_min * scale)),
                 cv::Point(int(std::ceil(o.box.x_max * scale)), int(std::ceil(o.box.y_max * scale))));
    box &= cv::Rect({}, size);
    if (box.area() == 0) continue;
    cv::Mat roi = m(box);
    cv::max(roi, float(o.score.value_or(1.0) / unit), roi);
  }
  return m;
}

// Pixel AUROC and PRO over the records at `idx` that have a map and ground truth.
std::pair<double, double> PixelMetrics(const std::vector<Record>& recs, const std::vector<cv::Mat>& masks,
                                       const std::vector<size_t>& idx) {
  std::vector<cv::Mat> maps, gts;
  bool any_defect = false;
  for (size_t i : idx) {
    if (recs[i].map.empty() || masks[i].empty()) continue;
    maps.push_back(recs[i].map);
    gts.push_back(masks[i]);
    any_defect = any_defect || cv::countNonZero(masks[i]) > 0;
  }
  if (maps.empty() || !any_defect) return {kNaN, kNaN};
  return {PixelAuroc(maps, gts), Pro(maps, gts)};
}

}  // namespace

RunMetrics Evaluate(const Dataset& d, const std::vector<Record>& recs) {
  RunMetrics m;
  std::vector<double> scores;
  std::vector<bool> nok;
  std::vector<cv::Mat> masks(recs.size());  // at map size; empty when no ground truth
  const bool pixel = d.has_masks();
  for (size_t i = 0; i < recs.size(); ++i) {
    const Record& r = recs[i];
    const Sample& s = d.samples[r.sample];
    m.confusion.Add(s.nok, r.predicted_nok());
    if (r.result.error) ++m.errors;
    // In threshold units: an engine whose threshold moves (a line window) is ranked by what decides.
    const double unit = r.result.threshold > 0 ? r.result.threshold : 1.0;
    scores.push_back(r.result.error ? std::numeric_limits<double>::infinity() : r.result.score / unit);
    nok.push_back(s.nok);
    auto& t = m.per_type[s.type];
    ++t.images;
    t.correct += s.nok == r.predicted_nok();
    if (!pixel || r.map.empty()) continue;
    if (!s.nok) {
      masks[i] = cv::Mat::zeros(r.map.size(), CV_8U);
    } else if (!s.mask.empty()) {
      cv::Mat gt = cv::imread(s.mask.string(), cv::IMREAD_GRAYSCALE);
      if (!gt.empty()) cv::resize(gt, masks[i], r.map.size(), 0, 0, cv::INTER_NEAREST);
    }
  }
  m.cls = Classify(m.confusion);
  m.auroc = Auroc(scores, nok);
  const ThresholdChoice best = BestThreshold(scores, nok);
  m.best_balanced_accuracy = best.balanced_accuracy;
  m.best_threshold_factor = best.threshold;
  const bool one_threshold = std::all_of(recs.begin(), recs.end(), [&](const Record& r) {
    return r.result.error || std::abs(r.result.threshold - recs.front().result.threshold) < 1e-12;
  });
  m.best_threshold = one_threshold && !recs.empty() && recs.front().result.threshold > 0 ? best.threshold * recs.front().result.threshold
                                                                                          : std::nan("");
  m.calibration_gap = m.best_balanced_accuracy - m.cls.balanced_accuracy;
  std::vector<size_t> all(recs.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  std::tie(m.pixel_auroc, m.pro) = pixel ? PixelMetrics(recs, masks, all) : std::pair{kNaN, kNaN};
  for (auto& [type, t] : m.per_type) {
    t.auroc = t.pixel_auroc = t.pro = kNaN;
    if (type == "good") continue;
    std::vector<size_t> idx;
    std::vector<double> sc;
    std::vector<bool> nk;
    for (size_t i = 0; i < recs.size(); ++i) {
      const Sample& s = d.samples[recs[i].sample];
      if (s.type != type && s.nok) continue;
      idx.push_back(i);
      sc.push_back(scores[i]);
      nk.push_back(s.nok);
    }
    t.auroc = Auroc(sc, nk);
    if (pixel) std::tie(t.pixel_auroc, t.pro) = PixelMetrics(recs, masks, idx);
  }
  return m;
}

// Where the ground truth marks a defect, the box an operator would draw around it: the bounding box
// of the mask's largest blob, in the image's original pixels.
std::optional<BoundingBox> MaskBox(const std::filesystem::path& mask, cv::Size image) {
  if (mask.empty()) return std::nullopt;
  cv::Mat m = cv::imread(mask.string(), cv::IMREAD_GRAYSCALE);
  if (m.empty() || cv::countNonZero(m) == 0) return std::nullopt;
  cv::Mat labels, stats, centroids;
  const int n = cv::connectedComponentsWithStats(m > 127, labels, stats, centroids);
  int best = 0;
  for (int k = 1; k < n; ++k)
    if (best == 0 || stats.at<int>(k, cv::CC_STAT_AREA) > stats.at<int>(best, cv::CC_STAT_AREA)) best = k;
  if (best == 0) return std::nullopt;
  const double fx = double(image.width) / m.cols, fy = double(image.height) / m.rows;
  const int x = stats.at<int>(best, cv::CC_STAT_LEFT), y = stats.at<int>(best, cv::CC_STAT_TOP);
  const int w = stats.at<int>(best, cv::CC_STAT_WIDTH), h = stats.at<int>(best, cv::CC_STAT_HEIGHT);
  return BoundingBox{int(x * fx), int(y * fy), std::min(image.width, int(std::ceil((x + w) * fx))),
                     std::min(image.height, int(std::ceil((y + h) * fy)))};
}

// For --type-shots, as the service names defects: an example is what an operator's box around the
// defect (the ground truth's) describes; a part to name is described by its most anomalous NOK
// region, or by a small box around its heat map's peak when the engine judged it OK.
void NamingDescriptors(Engine& engine, const Sample& s, const Image& image, const Inspection& insp, Record& rec) {
  if (image.bgr.empty()) return;
  std::optional<BoundingBox> where;
  const DefectObject* top = nullptr;
  for (const auto& o : insp.result.objects)
    if (o.qc == "NOK" && o.has_box && (!top || o.score.value_or(0) > top->score.value_or(0))) top = &o;
  const cv::Size size = image.size();
  if (top) {
    where = top->box;
  } else if (!insp.heatmap.empty()) {
    cv::Point peak;
    cv::minMaxLoc(insp.heatmap, nullptr, nullptr, nullptr, &peak);
    const int px = int((peak.x + 0.5) * size.width / insp.heatmap.cols), py = int((peak.y + 0.5) * size.height / insp.heatmap.rows);
    const int half = std::max(2, int(0.03 * std::max(size.width, size.height)));
    where = BoundingBox{std::max(0, px - half), std::max(0, py - half), std::min(size.width, px + half), std::min(size.height, py + half)};
  }
  if (where)
    if (auto q = engine.DescribeRegion(image, *where); q.ok()) rec.descriptor = std::move(*q);
  if (auto box = MaskBox(s.mask, size))
    if (auto e = engine.DescribeRegion(image, *box); e.ok()) rec.example_descriptor = std::move(*e);
}

StatusOr<std::vector<Run>> RunBench(const Dataset& d, const EngineFactory& factory, const BenchOptions& o) {
  if (o.seeds < 1 || o.jobs < 1) return InvalidArgument("seeds and jobs must be at least 1");
  if (o.shots > d.pool.size())
    return InvalidArgument("--shots " + std::to_string(o.shots) + " but the reference pool has only " +
                           std::to_string(d.pool.size()) + " images");
  std::mutex mu;
  auto report = [&](BenchProgress p) {
    if (!o.progress) return;
    std::lock_guard lock(mu);
    o.progress(p);
  };
  std::vector<Run> runs;
  for (int ri = 0; ri < o.seeds; ++ri) {
    Run run;
    run.seed = o.first_seed + ri;
    std::vector<std::filesystem::path> batch;  // zero-shot: the test set judges itself, no reference is drawn
    if (o.zero_shot) {
      for (const auto& sample : d.samples) batch.push_back(sample.image);
    } else {
      const size_t k = o.shots == 0 ? d.pool.size() : o.shots;
      if (o.draw) {
        auto drawn = o.draw(d.pool, k, run.seed);
        if (!drawn.ok()) return Status(drawn.status().code(), "seed " + std::to_string(run.seed) + ": " + drawn.status().message());
        run.references = *drawn;
      } else {
        run.references = DrawShots(d.pool, k, run.seed);
      }
    }
    report({ri, o.seeds, 0, d.samples.size(), "references"});
    auto t0 = std::chrono::steady_clock::now();
    auto engine = factory(o.zero_shot ? batch : run.references);
    if (!engine.ok())
      return Status(engine.status().code(), "seed " + std::to_string(run.seed) + ": " + engine.status().message());
    run.setup_ms = MsSince(t0);
    run.calibration = (*engine)->Calibration();

    run.records.resize(d.samples.size());
    if (o.stream && o.warmup > 0) {
      std::vector<std::filesystem::path> before;
      for (const auto& p : d.pool)
        if (std::find(run.references.begin(), run.references.end(), p) == run.references.end()) before.push_back(p);
      SeededShuffle(before, run.seed * 7919 + 31);
      before.resize(std::min(before.size(), o.warmup));
      for (const auto& p : before) InspectFile(**engine, p, o.limits);
    }
    std::atomic<size_t> done{0};
    std::vector<size_t> order(d.samples.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    if (o.stream) SeededShuffle(order, run.seed * 7919 + 29);
    t0 = std::chrono::steady_clock::now();
    ParallelFor(d.samples.size(), o.stream ? 1 : o.jobs, [&](size_t k) {
      const size_t i = order[k];
      Record& rec = run.records[i];
      rec.sample = i;
      const auto start = std::chrono::steady_clock::now();
      Image image;
      Inspection insp = InspectFile(**engine, d.samples[i].image, o.limits, &image);
      rec.latency_ms = MsSince(start);
      rec.map = ScoreMap(insp, o.map_side);
      rec.map_is_heatmap = !insp.heatmap.empty();
      if (o.type_shots > 0 && d.samples[i].nok) NamingDescriptors(**engine, d.samples[i], image, insp, rec);
      rec.result = std::move(insp.result);
      report({ri, o.seeds, ++done, d.samples.size(), "inspect"});
    });
    run.wall_ms = MsSince(t0);
    run.throughput_ips = run.wall_ms > 0 ? 1000.0 * double(d.samples.size()) / run.wall_ms : 0;
    for (const auto& rec : run.records)
      if (!rec.result.error) {
        run.threshold = rec.result.threshold;
        break;
      }
    run.metrics = Evaluate(d, run.records);
    if (o.type_shots > 0) run.types = NameTypes(d, run.records, o.type_shots, run.seed);
    for (auto& rec : run.records) rec.descriptor = {}, rec.example_descriptor = {};  // large; named already
    if (ri > 0)
      for (auto& rec : run.records) rec.map.release();
    runs.push_back(std::move(run));
  }
  return runs;
}

}  // namespace zeroqc
