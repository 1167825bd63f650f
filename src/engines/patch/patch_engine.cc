#include "engines/patch/patch_engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include <opencv2/imgproc.hpp>

#include "core/hash.h"
#include "engines/patch/foreground.h"
#include "engines/patch/knn.h"
#include "engines/patch/mutual.h"
#include "engines/patch/regions.h"
#include "engines/patch/threshold.h"
#include "image/color.h"

namespace zeroqc {
namespace {

constexpr int kBankFormat = 6;  // bump when the bank's meaning changes: invalidates caches
// Images are decoded (JPEG at a reduced scale) and jittered at no more than about this long side:
// 2.5x the backbone's 416 px input, so the resize to it still averages several pixels into one.
constexpr int kDecodeSide = 1024;

// Pseudo-good images: shifted, rotated and re-lit copies of a reference (±2°, 1-2% shift, ±5%
// gain at strength 1). They stand in for other good parts of a one-shot bank (see
// CalibrateFewShot). Stronger copies (±5°) helped loose parts like toothbrushes as much, but a
// rigid part in a fixture turned its own rotation into an anomaly and the threshold rose above
// every defect.
std::vector<cv::Mat> Jitter(const cv::Mat& bgr, double strength) {
  std::vector<cv::Mat> out;
  const cv::Point2f c(bgr.cols / 2.f, bgr.rows / 2.f);
  for (auto [angle, dx, gain] : {std::tuple{2.0, 0.01, 1.05}, {-2.0, -0.01, 0.95}, {0.0, 0.02, 1.0}}) {
    cv::Mat m = cv::getRotationMatrix2D(c, angle * strength, 1.0), r;
    m.at<double>(0, 2) += dx * strength * bgr.cols;
    // Replicate, not reflect: a letterboxed photo's black bands must stay bands, not turn into tilted
    // edges that score as anomalies and lift the threshold.
    cv::warpAffine(bgr, r, m, bgr.size(), cv::INTER_LINEAR, cv::BORDER_REPLICATE);
    r.convertTo(r, -1, 1.0 + (gain - 1.0) * strength);
    out.push_back(r);
  }
  return out;
}

// Identifies an image by its pixels (the same photo under two names is one image).
std::string PixelKey(const cv::Mat& bgr) {
  cv::Mat c = bgr.isContinuous() ? bgr : bgr.clone();
  return Sha256Hex(std::string_view(reinterpret_cast<const char*>(c.data), c.total() * c.elemSize())) +
         std::to_string(c.cols) + "x" + std::to_string(c.rows);
}

// Less the part's average patch, L2-normalised: what the defect adds, not what the part looks like.
std::vector<float> LessMeanPatch(const cv::Mat& patches, cv::Mat sum) {
  cv::Mat mean;
  cv::reduce(patches, mean, 0, cv::REDUCE_AVG);
  sum -= mean;
  const double n = cv::norm(sum);
  if (n > 0) sum /= n;
  return std::vector<float>(sum.begin<float>(), sum.end<float>());
}

// The mean of the patches whose cell centre lies in `box` (pixels of a w x h image; at least the
// cell of its centre), less the image's mean patch: what the region adds to the part.
std::vector<float> RegionDescriptor(const PatchGrid& g, const BoundingBox& box, int w, int h) {
  if (g.descriptors.empty() || w <= 0 || h <= 0) return {};
  const double fx = double(g.grid_w) / w, fy = double(g.grid_h) / h;
  cv::Mat sum = cv::Mat::zeros(1, g.descriptors.cols, CV_32F);
  int n = 0;
  for (int y = 0; y < g.grid_h; ++y)
    for (int x = 0; x < g.grid_w; ++x) {
      const double cx = (x + 0.5) / fx, cy = (y + 0.5) / fy;
      if (cx < box.x_min || cx >= box.x_max || cy < box.y_min || cy >= box.y_max) continue;
      sum += g.descriptors.row(y * g.grid_w + x);
      ++n;
    }
  if (n == 0) {  // a box smaller than a cell: the cell of its centre
    const int x = std::clamp(int((box.x_min + box.x_max) / 2.0 * fx), 0, g.grid_w - 1);
    const int y = std::clamp(int((box.y_min + box.y_max) / 2.0 * fy), 0, g.grid_h - 1);
    sum += g.descriptors.row(y * g.grid_w + x), n = 1;
  }
  return LessMeanPatch(g.descriptors, sum / n);
}

// The foreground direction of a set of images' descriptors (the deepest layer is the last block).
cv::Mat ForegroundOf(const std::vector<cv::Mat>& descriptors, const std::vector<int>& blocks, int grid_h, int grid_w) {
  const int width = blocks.empty() ? descriptors.front().cols : blocks.back();
  return ForegroundDirection(descriptors, width, grid_h, grid_w);
}

}  // namespace

StatusOr<std::string> MemoryBankKey(const std::string& backbone_fingerprint, const PatchEngineOptions& o,
                                    const std::vector<std::filesystem::path>& refs) {
  char params[256];
  std::snprintf(params, sizeof params, "v%d|n%d|d%d|c%d|s%.4f|r%d|f%d|t%d", kBankFormat, o.patch.neighbourhood,
                o.patch.layer_dim, o.max_bank_rows, o.smoothing_sigma, o.limits.decode_side, int(o.foreground_mask),
                o.reference_rotations);
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
  if (engine->opt_.limits.decode_side == 0) engine->opt_.limits.decode_side = kDecodeSide;
  engine->backbone_ = std::move(*backbone);
  if (options.line_window != 0 && (options.line_window < kMinLineWindow || options.line_window > kMaxLineWindow))
    return InvalidArgument("the line window is 0 (off) or " + std::to_string(kMinLineWindow) + "-" + std::to_string(kMaxLineWindow) +
                           " parts, got " + std::to_string(options.line_window));
  if (options.line_window > 0) {
    if (options.zero_shot) return InvalidArgument("zero-shot judges its batch already: it takes no line window");
    if (options.threshold)
      return InvalidArgument("a fixed threshold and the line window exclude each other: the window recalibrates the threshold from the line's parts");
    engine->line_ = std::make_shared<LineMemory>();
  }
  if (options.zero_shot) {
    if (refs.size() < kMinBatch)
      return InvalidArgument("zero-shot needs a batch of at least " + std::to_string(kMinBatch) + " images of the same product (got " +
                             std::to_string(refs.size()) + "); most of them must be good parts");
    ZQ_RETURN_IF_ERROR(engine->BuildBatch(refs));
    engine->threshold_ = options.threshold ? *options.threshold : CalibrateBatch(engine->batch_scores_, options.threshold_sigmas);
    return engine;
  }

  if (!options.cache_dir.empty()) {
    auto key = MemoryBankKey(engine->backbone_->fingerprint(), engine->opt_, refs);
    if (!key.ok()) return key.status();
    engine->cache_file_ = options.cache_dir / (*key + ".bank");
    auto cached = MemoryBank::Load(engine->cache_file_);
    if (cached.ok()) {
      engine->bank_ = std::move(*cached);
      engine->from_cache_ = true;
      Report(options.progress, "memory bank loaded from the cache", 1, 1);
    }
  }
  if (!engine->from_cache_) {
    ZQ_RETURN_IF_ERROR(engine->Build(refs));
    if (!engine->cache_file_.empty()) ZQ_RETURN_IF_ERROR(engine->bank_.Save(engine->cache_file_));
  }
  engine->threshold_ = options.threshold ? *options.threshold
                                         : CalibrateFewShot(engine->bank_.loo_scores, refs.size(), options.threshold_sigmas);
  return engine;
}

StatusOr<std::unique_ptr<Engine>> PatchEngine::WithReference(const std::filesystem::path& reference) const {
  if (opt_.zero_shot) return Unsupported("a zero-shot engine has no references to add to");
  auto img = LoadImage(reference, opt_.limits);
  if (!img.ok()) return Status(img.status().code(), "reference " + img.status().message());
  auto e = std::unique_ptr<PatchEngine>(new PatchEngine());
  e->opt_ = opt_;
  e->backbone_ = backbone_;
  auto g = e->DescribeReference(img->bgr);
  if (!g.ok()) return g.status();
  // Its leave-one-out score: the new part (upright) against the references it joins.
  const double loo = ImageScore(AnomalyMap(ReferenceDistances(g->descriptors.rowRange(0, g->grid_h * g->grid_w))));
  e->bank_ = bank_;
  e->bank_.sq_norms = cv::Mat();  // cv::Mat copies share pixels: fresh ones, so this engine's bank stays as it is
  e->bank_.Add(*g);               // (Add allocates new rows)
  e->bank_.UpdateNorms();
  // The new score joins the others, each measured against the references before it. Recomputing
  // them all against the grown bank (what a rebuild does) was measured worse: from one reference,
  // two references' cross scores set the threshold so high that one taught false alarm let every
  // defect pass (metal plate 0.73 -> 0.39 accuracy); the one-reference calibration's jittered
  // copies keep it sane while references are few (docs/BENCHMARKS.md, online benchmark).
  e->bank_.loo_scores.push_back(loo);
  e->line_ = line_;  // the line goes on
  if (e->bank_.rows.rows > opt_.max_bank_rows) CoresetSubsample(e->bank_, double(opt_.max_bank_rows) / e->bank_.rows.rows);
  const size_t references = e->bank_.ranges.size();
  e->threshold_ = opt_.threshold ? *opt_.threshold : CalibrateFewShot(e->bank_.loo_scores, references, opt_.threshold_sigmas);
  return std::unique_ptr<Engine>(std::move(e));
}

std::optional<PatchGrid> DescriptorCache::Find(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = grids_.find(key);
  if (it == grids_.end()) return std::nullopt;
  return it->second;
}

void DescriptorCache::Put(const std::string& key, const PatchGrid& grid) {
  std::lock_guard lock(mu_);
  grids_.emplace(key, grid);
}

StatusOr<PatchGrid> PatchEngine::Describe(const cv::Mat& bgr) {
  std::string key;
  if (opt_.descriptors) {
    key = PixelKey(bgr);
    if (auto g = opt_.descriptors->Find(key)) return *g;
  }
  auto maps = backbone_->Extract(bgr);
  if (!maps.ok()) return maps.status();
  PatchGrid g = MakePatchGrid(*maps, opt_.patch);
  if (opt_.descriptors) opt_.descriptors->Put(key, g);
  return g;
}

StatusOr<PatchGrid> PatchEngine::DescribeReference(const cv::Mat& bgr) {
  auto g = Describe(bgr);
  if (!g.ok() || opt_.reference_rotations <= 1) return g;
  std::vector<cv::Mat> rows{g->descriptors};
  const cv::Point2f c(bgr.cols / 2.f, bgr.rows / 2.f);
  for (int k = 1; k < opt_.reference_rotations; ++k) {
    // In the same frame, the corners filled by reflection: loose parts lie on a uniform ground.
    cv::Mat turned, m = cv::getRotationMatrix2D(c, 360.0 * k / opt_.reference_rotations, 1.0);
    cv::warpAffine(bgr, turned, m, bgr.size(), cv::INTER_LINEAR, cv::BORDER_REFLECT101);
    auto r = Describe(turned);
    if (!r.ok()) return r.status();
    rows.push_back(r->descriptors);
  }
  cv::vconcat(rows, g->descriptors);
  return g;
}

cv::Mat PatchEngine::AnomalyMap(const std::vector<float>& d) const {
  cv::Mat grid(bank_.grid_h, bank_.grid_w, CV_32F, const_cast<float*>(d.data())), map;
  const auto& s = backbone_->spec();
  cv::resize(grid, map, {s.input_width, s.input_height}, 0, 0, cv::INTER_LINEAR);
  if (opt_.smoothing_sigma > 0) cv::GaussianBlur(map, map, {0, 0}, opt_.smoothing_sigma);
  return map;
}

std::vector<float> PatchEngine::ReferenceDistances(const cv::Mat& descriptors, int exclude) const {
  auto d = NearestDistances(descriptors, bank_, exclude);
  if (!bank_.foreground.empty()) MaskBackground(bank_.foreground, descriptors, bank_.grid_h, bank_.grid_w, d);
  return d;
}

std::vector<float> PatchEngine::PeerDistances(const cv::Mat& descriptors, const std::vector<const MemoryBank*>& peers,
                                              int anchor) const {
  auto d = MutualDistances(descriptors, peers, opt_.zero_shot_fraction, anchor);
  if (!bank_.foreground.empty()) MaskBackground(bank_.foreground, descriptors, bank_.grid_h, bank_.grid_w, d);
  return d;
}

Status PatchEngine::Build(const std::vector<std::filesystem::path>& refs) {
  std::vector<PatchGrid> grids;
  cv::Mat jitter_source;  // one reference: jittered copies stand in for other good parts
  const size_t n = refs.size();
  const auto& progress = opt_.progress;
  Report(progress, "describing references", 0, n);
  for (size_t i = 0; i < n; ++i) {
    auto img = LoadImage(refs[i], opt_.limits);
    if (!img.ok()) return Status(img.status().code(), "reference " + img.status().message());
    if (n == 1) {  // kept small: the backbone sees 416 px
      const double s = std::min(1.0, double(kDecodeSide) / std::max(img->bgr.cols, img->bgr.rows));
      jitter_source = img->bgr;
      if (s < 1.0) cv::resize(img->bgr, jitter_source, {}, s, s, cv::INTER_AREA);
    }
    auto g = DescribeReference(img->bgr);
    if (!g.ok()) return g.status();
    grids.push_back(std::move(*g));
    Report(progress, "describing references", i + 1, n);
  }
  bank_.Add(grids);
  bank_.UpdateNorms();
  if (opt_.foreground_mask) {
    std::vector<cv::Mat> descriptors;
    for (const auto& g : grids) descriptors.push_back(g.descriptors.rowRange(0, g.grid_h * g.grid_w));  // upright only
    bank_.foreground = ForegroundOf(descriptors, bank_.blocks, bank_.grid_h, bank_.grid_w);
  }
  if (bank_.rows.rows > opt_.max_bank_rows) {
    Report(progress, "choosing the coreset", 0, 1);
    CoresetSubsample(bank_, double(opt_.max_bank_rows) / bank_.rows.rows);
    Report(progress, "choosing the coreset", 1, 1);
  }

  auto score = [&](const cv::Mat& bgr) -> StatusOr<double> {
    auto g = Describe(bgr);
    if (!g.ok()) return g.status();
    return ImageScore(AnomalyMap(ReferenceDistances(g->descriptors)));
  };
  bank_.loo_scores.clear();
  // Calibration: each reference left out in turn (one reference: each jittered copy) is a step.
  const size_t steps = n == 1 ? 3 : n;
  size_t step = 0;
  Report(progress, "calibrating", 0, steps);
  if (n == 1) {  // no leave-one-out: jittered copies stand in for other good parts
    for (const auto& j : Jitter(jitter_source, 1.0)) {
      auto s = score(j);
      if (!s.ok()) return s.status();
      bank_.loo_scores.push_back(*s);
      Report(progress, "calibrating", ++step, steps);
    }
    return Status::Ok();
  }
  for (size_t i = 0; i < n; ++i) {
    const cv::Mat upright = grids[i].descriptors.rowRange(0, grids[i].grid_h * grids[i].grid_w);
    bank_.loo_scores.push_back(ImageScore(AnomalyMap(ReferenceDistances(upright, int(i)))));
    Report(progress, "calibrating", ++step, steps);
  }
  return Status::Ok();
}

Status PatchEngine::BuildBatch(const std::vector<std::filesystem::path>& images) {
  // An image that cannot be read is left out of the batch (inspecting it reports the error).
  const auto& progress = opt_.progress;
  Report(progress, "describing the batch", 0, images.size());
  for (size_t k = 0; k < images.size(); ++k) {
    if (k > 0) Report(progress, "describing the batch", k, images.size());
    const auto& path = images[k];
    auto img = LoadImage(path, opt_.limits);
    if (!img.ok()) continue;
    auto g = Describe(img->bgr);
    if (!g.ok()) return g.status();
    MemoryBank b;
    b.Add(*g);
    b.UpdateNorms();
    batch_index_[PixelKey(img->bgr)] = batch_.size();
    batch_.push_back(std::move(b));
    batch_paths_.push_back(path);
  }
  Report(progress, "describing the batch", images.size(), images.size());
  if (batch_.size() < kMinBatch)
    return InvalidArgument("zero-shot needs at least " + std::to_string(kMinBatch) + " readable images of the same product, got " +
                           std::to_string(batch_.size()));
  bank_.grid_h = batch_.front().grid_h;
  bank_.grid_w = batch_.front().grid_w;
  if (opt_.foreground_mask) {
    std::vector<cv::Mat> descriptors;
    for (const auto& b : batch_) descriptors.push_back(b.rows);
    bank_.foreground = ForegroundOf(descriptors, batch_.front().blocks, bank_.grid_h, bank_.grid_w);
  }
  Report(progress, "scoring the batch", 0, batch_.size());
  for (size_t i = 0; i < batch_.size(); ++i) {
    if (i > 0) Report(progress, "scoring the batch", i, batch_.size());
    std::vector<const MemoryBank*> peers;
    for (int j : Peers(int(i), int(batch_.size()), opt_.zero_shot_peers)) peers.push_back(&batch_[j]);
    batch_dist_.push_back(PeerDistances(batch_[i].rows, peers));
    batch_scores_.push_back(ImageScore(AnomalyMap(batch_dist_.back())));
  }
  Report(progress, "scoring the batch", batch_.size(), batch_.size());
  return Status::Ok();
}

std::vector<float> PatchEngine::BatchDistances(const Image& image, const PatchGrid& grid) const {
  if (auto it = batch_index_.find(PixelKey(image.bgr)); it != batch_index_.end()) return batch_dist_[it->second];
  std::vector<const MemoryBank*> peers;  // a new image: peers spread over the whole batch
  for (int j : Peers(-1, int(batch_.size()), opt_.zero_shot_peers)) peers.push_back(&batch_[j]);
  return PeerDistances(grid.descriptors, peers);
}

std::pair<std::vector<float>, double> PatchEngine::LineDistances(const Image& image, const PatchGrid& grid, Inspection& out) {
  const std::string key = PixelKey(image.bgr);
  // One part at a time: the window and its scores change with every part (the search inside is
  // multi-threaded already).
  std::lock_guard lock(line_->mu);
  auto& parts = line_->parts;
  auto seen = std::find_if(parts.begin(), parts.end(), [&](const LinePart& p) { return p.key == key; });
  auto others = [&](const void* self) {
    std::vector<const MemoryBank*> peers{&bank_};  // the references: one peer (kRefs), and the anchor
    for (const auto& p : parts)
      if (&p.bank != self && p.key != key) peers.push_back(&p.bank);
    return peers;
  };
  constexpr int kRefs = 0;  // the references' place among others()'s peers: MutualDistances' anchor
  std::vector<const MemoryBank*> peers = others(nullptr);
  std::vector<float> d;
  double threshold = threshold_, score = std::nan("");
  if (peers.size() < kMinBatch) {
    // Warming up: too few parts to judge each other; the references alone judge.
    d = ReferenceDistances(grid.descriptors);
  } else {
    // The window has just filled: its parts get their mutual scores, each against the others.
    for (auto& p : parts)
      if (std::isnan(p.score)) {
        p.score = ImageScore(AnomalyMap(PeerDistances(p.query, others(&p.bank), kRefs)));
        p.query.release();
      }
    d = PeerDistances(grid.descriptors, peers, kRefs);
    score = ImageScore(AnomalyMap(d));
    for (const auto& p : parts)
      if (p.key != key) out.peer_scores.push_back(p.score);
    std::vector<double> scores = out.peer_scores;
    scores.push_back(score);
    // The zero-shot batch's rule, whose Otsu split also holds when a run of defects fills the
    // window (docs/BENCHMARKS.md: what the alternatives measured).
    threshold = CalibrateBatch(scores, opt_.threshold_sigmas);
  }
  if (seen == parts.end()) {
    LinePart p{key, {}, score, {}};
    p.bank.Add(grid);
    if (std::isnan(score)) p.query = grid.descriptors;
    // The coreset on a 32-dimension projection: 128 cost 0.25 s a part for the same verdicts.
    if (opt_.line_part_fraction < 1) CoresetSubsample(p.bank, opt_.line_part_fraction, 0, 32);
    else p.bank.UpdateNorms();
    parts.push_back(std::move(p));
    if (parts.size() > size_t(opt_.line_window)) parts.pop_front();
  }
  return {std::move(d), threshold};
}

StatusOr<std::vector<float>> PatchEngine::DescribeRegion(const Image& image, const BoundingBox& box) {
  const cv::Size size = image.size();
  if (box.x_min < 0 || box.y_min < 0 || box.x_max > size.width || box.y_max > size.height || box.x_min >= box.x_max ||
      box.y_min >= box.y_max)
    return InvalidArgument("the box must lie within the " + std::to_string(size.width) + "x" + std::to_string(size.height) +
                           " image and have an area");
  // The box's neighbourhood (twice the box, at least 15% of the image's long side, square) seen at
  // the backbone's whole input size: a defect of a few pixels in the whole image fills many patches
  // of the crop. On tire's four types this named 0.43 of the parts right from one example each,
  // against 0.36 from the whole image's patches (docs/BENCHMARKS.md). One more forward pass.
  const cv::Mat& bgr = image.bgr;
  const double f = double(bgr.cols) / size.width;  // decoded pixels per original pixel
  const double cx = (box.x_min + box.x_max) / 2.0 * f, cy = (box.y_min + box.y_max) / 2.0 * f;
  double side = std::max({2.0 * (box.x_max - box.x_min) * f, 2.0 * (box.y_max - box.y_min) * f, 0.15 * std::max(bgr.cols, bgr.rows)});
  side = std::max(1.0, std::min(side, double(std::min(bgr.cols, bgr.rows))));
  const int s = int(side);
  const int x0 = std::clamp(int(cx - side / 2), 0, bgr.cols - s), y0 = std::clamp(int(cy - side / 2), 0, bgr.rows - s);
  auto maps = backbone_->Extract(bgr(cv::Rect(x0, y0, s, s)).clone());
  if (!maps.ok()) return maps.status();
  const PatchGrid g = MakePatchGrid(*maps, opt_.patch);
  const BoundingBox inner{int(box.x_min * f) - x0, int(box.y_min * f) - y0, int(std::ceil(box.x_max * f)) - x0,
                          int(std::ceil(box.y_max * f)) - y0};
  return RegionDescriptor(g, inner, s, s);
}

nlohmann::json PatchEngine::Calibration() const {
  const bool masked = !bank_.foreground.empty();
  if (opt_.zero_shot) return {{"threshold", threshold_}, {"batch", batch_.size()}, {"batch_scores", batch_scores_}, {"foreground_mask", masked}};
  nlohmann::json j = {{"threshold", threshold_}, {"references", bank_.ranges.size()}, {"loo_scores", bank_.loo_scores},
                      {"fixed", opt_.threshold.has_value()}, {"foreground_mask", masked}};
  if (line_) {
    std::lock_guard lock(line_->mu);
    j["line"] = {{"window", opt_.line_window}, {"parts", line_->parts.size()}};
  }
  return j;
}

int PatchEngine::DecodeSide() const { return opt_.limits.decode_side; }

Inspection PatchEngine::Inspect(const Image& image) { return InspectWith(image, false); }

Inspection PatchEngine::InspectAside(const Image& image) { return InspectWith(image, true); }

Inspection PatchEngine::InspectWith(const Image& image, bool aside) {
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
  std::vector<float> distances;
  double threshold = threshold_;
  bool mutual = opt_.zero_shot;  // judged by other parts, not by the references alone
  if (opt_.zero_shot) distances = BatchDistances(image, *g);
  else if (line_ && !aside) std::tie(distances, threshold) = LineDistances(image, *g, out), mutual = !out.peer_scores.empty();
  else distances = ReferenceDistances(g->descriptors);
  r.threshold = threshold;
  r.calibration = opt_.zero_shot ? "batch" : mutual ? "line" : opt_.threshold ? "fixed" : "references";
  cv::Mat map = AnomalyMap(distances);
  r.score = ImageScore(map);
  r.verdict = r.score > threshold ? "NOK" : "OK";

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
    regions = ExtractRegions(map, threshold, min_area);
    if (regions.empty()) regions = ExtractRegions(map, threshold, 1);
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
    if (opt_.zero_shot)
      std::snprintf(why, sizeof why, "differs from the other %zu parts of the batch: peak score %.3f over threshold %.3f, %.2f%% of the image",
                    batch_.size() - 1, reg.peak, threshold, 100.0 * reg.area / map.total());
    else if (mutual)
      std::snprintf(why, sizeof why, "differs from the references and the line's recent parts: peak score %.3f over threshold %.3f, %.2f%% of the image",
                    reg.peak, threshold, 100.0 * reg.area / map.total());
    else
      std::snprintf(why, sizeof why, "differs from all %zu reference images: peak score %.3f over threshold %.3f, %.2f%% of the image",
                    bank_.ranges.size(), reg.peak, threshold, 100.0 * reg.area / map.total());
    o.reason = why;
    r.objects.push_back(std::move(o));
  }
  char text[200];
  const char* against = opt_.zero_shot ? "the other parts of the batch"
                        : mutual      ? "the references and the line's recent parts"
                                      : "the reference images of good parts";
  if (r.verdict == "NOK")
    std::snprintf(text, sizeof text, "NOK: %zu region(s) differ from %s (score %.3f > threshold %.3f)", r.objects.size(),
                  against, r.score, threshold);
  else
    std::snprintf(text, sizeof text, "OK: no region differs from %s (score %.3f <= threshold %.3f)", against, r.score,
                  threshold);
  r.text = text;
  out.heatmap = map / threshold;
  r.timing_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace zeroqc
