#include "engines/patch/patch_engine.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include <opencv2/imgproc.hpp>

#include "core/hash.h"
#include "engines/patch/knn.h"
#include "engines/patch/regions.h"
#include "engines/patch/threshold.h"
#include "image/color.h"

namespace zeroqc {
namespace {

constexpr int kBankFormat = 1;  // bump when the bank's meaning changes: invalidates caches

// Pseudo-references for a single reference: slightly shifted, rotated and re-lit copies, so that
// a one-shot bank still has good images that are not pixel-identical to score for calibration.
std::vector<cv::Mat> Jitter(const cv::Mat& bgr) {
  std::vector<cv::Mat> out;
  const cv::Point2f c(bgr.cols / 2.f, bgr.rows / 2.f);
  for (auto [angle, dx, gain] : {std::tuple{2.0, 0.01, 1.05}, {-2.0, -0.01, 0.95}, {0.0, 0.02, 1.0}}) {
    cv::Mat m = cv::getRotationMatrix2D(c, angle, 1.0), r;
    m.at<double>(0, 2) += dx * bgr.cols;
    cv::warpAffine(bgr, r, m, bgr.size(), cv::INTER_LINEAR, cv::BORDER_REFLECT);
    r.convertTo(r, -1, gain);
    out.push_back(r);
  }
  return out;
}

}  // namespace

StatusOr<std::string> MemoryBankKey(const std::string& backbone_fingerprint, const PatchEngineOptions& o,
                                    const std::vector<std::filesystem::path>& refs) {
  char params[256];
  std::snprintf(params, sizeof params, "v%d|n%d|d%d|c%d|s%.4f", kBankFormat, o.patch.neighbourhood,
                o.patch.layer_dim, o.max_bank_rows, o.smoothing_sigma);
  std::string key = backbone_fingerprint + "|" + params;
  std::vector<std::string> hashes;
  for (const auto& r : refs) {
    auto h = Sha256File(r);
    if (!h.ok()) return h.status();
    hashes.push_back(*h);
  }
  std::sort(hashes.begin(), hashes.end());  // the set of references matters, not their order
  for (const auto& h : hashes) key += "|" + h;
  return Sha256Hex(key);
}

StatusOr<std::unique_ptr<PatchEngine>> PatchEngine::Create(const PatchEngineOptions& options,
                                                           const std::vector<std::filesystem::path>& refs) {
  if (refs.empty())
    return InvalidArgument("no reference images: add photos of good parts to the reference folder");
  auto spec = BackboneSpec::Load(options.backbone_spec);
  if (!spec.ok()) return spec.status();
  auto backbone = Backbone::Open(*spec);
  if (!backbone.ok()) return backbone.status();
  auto engine = std::unique_ptr<PatchEngine>(new PatchEngine());
  engine->opt_ = options;
  engine->backbone_ = std::move(*backbone);

  if (!options.cache_dir.empty()) {
    auto key = MemoryBankKey(engine->backbone_->fingerprint(), options, refs);
    if (!key.ok()) return key.status();
    engine->cache_file_ = options.cache_dir / (*key + ".bank");
    auto cached = MemoryBank::Load(engine->cache_file_);
    if (cached.ok()) {
      engine->bank_ = std::move(*cached);
      engine->from_cache_ = true;
    }
  }
  if (!engine->from_cache_) {
    ZQ_RETURN_IF_ERROR(engine->Build(refs));
    if (!engine->cache_file_.empty()) ZQ_RETURN_IF_ERROR(engine->bank_.Save(engine->cache_file_));
  }
  engine->threshold_ = options.threshold ? *options.threshold
                                         : CalibrateThreshold(engine->bank_.loo_scores, options.threshold_sigmas);
  return engine;
}

StatusOr<PatchGrid> PatchEngine::Describe(const cv::Mat& bgr) {
  auto maps = backbone_->Extract(bgr);
  if (!maps.ok()) return maps.status();
  return MakePatchGrid(*maps, opt_.patch);
}

cv::Mat PatchEngine::AnomalyMap(const std::vector<float>& d) const {
  cv::Mat grid(bank_.grid_h, bank_.grid_w, CV_32F, const_cast<float*>(d.data())), map;
  const auto& s = backbone_->spec();
  cv::resize(grid, map, {s.input_width, s.input_height}, 0, 0, cv::INTER_LINEAR);
  if (opt_.smoothing_sigma > 0) cv::GaussianBlur(map, map, {0, 0}, opt_.smoothing_sigma);
  return map;
}

Status PatchEngine::Build(const std::vector<std::filesystem::path>& refs) {
  std::vector<PatchGrid> grids;
  cv::Mat first;  // kept for one-shot calibration, so the reference is not decoded twice
  for (const auto& path : refs) {
    auto img = LoadImage(path, opt_.limits);
    if (!img.ok()) return Status(img.status().code(), "reference " + img.status().message());
    if (first.empty()) first = img->bgr;
    auto g = Describe(img->bgr);
    if (!g.ok()) return g.status();
    bank_.Add(*g);
    grids.push_back(std::move(*g));
  }
  bank_.UpdateNorms();
  if (bank_.rows.rows > opt_.max_bank_rows) CoresetSubsample(bank_, double(opt_.max_bank_rows) / bank_.rows.rows);

  bank_.loo_scores.clear();
  if (grids.size() >= 2) {
    for (size_t i = 0; i < grids.size(); ++i)
      bank_.loo_scores.push_back(ImageScore(AnomalyMap(NearestDistances(grids[i].descriptors, bank_, int(i)))));
  } else {
    for (const auto& j : Jitter(first)) {
      auto g = Describe(j);
      if (!g.ok()) return g.status();
      bank_.loo_scores.push_back(ImageScore(AnomalyMap(NearestDistances(g->descriptors, bank_))));
    }
  }
  return Status::Ok();
}

Inspection PatchEngine::Inspect(const Image& image) {
  const auto t0 = std::chrono::steady_clock::now();
  Inspection out;
  InspectionResult& r = out.result;
  r = NewResult(image);
  r.threshold = threshold_;
  auto g = Describe(image.bgr);
  if (!g.ok()) {
    r.error = g.status().message();
    return out;
  }
  cv::Mat map = AnomalyMap(NearestDistances(g->descriptors, bank_));
  r.score = ImageScore(map);
  r.verdict = r.score > threshold_ ? "NOK" : "OK";

  // Regions at the map's resolution, boxes in original pixels. The verdict and the objects agree:
  // a region exists exactly when the map's peak (the score) is above the threshold.
  const double sx = double(r.width) / map.cols, sy = double(r.height) / map.rows;
  const int min_area = std::max(1, int(opt_.min_region_fraction * map.total()));
  cv::Mat small;
  cv::resize(image.bgr, small, map.size(), 0, 0, cv::INTER_AREA);
  // Regions only for a NOK part, so that objects and verdict agree; the peak of the map is at
  // least the score, so a NOK map always has a region above the threshold.
  std::vector<Region> regions;
  if (r.verdict == "NOK") {
    regions = ExtractRegions(map, threshold_, min_area);
    if (regions.empty()) regions = ExtractRegions(map, threshold_, 1);
  }
  for (const auto& reg : regions) {
    DefectObject o;
    o.name = "anomaly";
    o.qc = "NOK";
    o.color = ColorName(small, reg.mask);
    o.score = reg.peak;
    o.box = {int(reg.box.x * sx), int(reg.box.y * sy), int(std::ceil((reg.box.x + reg.box.width) * sx)),
             int(std::ceil((reg.box.y + reg.box.height) * sy))};
    char why[200];
    std::snprintf(why, sizeof why, "differs from all %zu reference images: peak score %.3f over threshold %.3f, %.2f%% of the image",
                  bank_.ranges.size(), reg.peak, threshold_, 100.0 * reg.area / map.total());
    o.reason = why;
    r.objects.push_back(std::move(o));
  }
  char text[200];
  if (r.verdict == "NOK")
    std::snprintf(text, sizeof text, "NOK: %zu region(s) differ from the reference images of good parts (score %.3f > threshold %.3f)",
                  r.objects.size(), r.score, threshold_);
  else
    std::snprintf(text, sizeof text, "OK: no region differs from the reference images of good parts (score %.3f <= threshold %.3f)",
                  r.score, threshold_);
  r.text = text;
  cv::resize(map / threshold_, out.heatmap, image.bgr.size(), 0, 0, cv::INTER_LINEAR);
  r.timing_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace zeroqc
