// The embedded engine: few-shot, training-free anomaly detection against a memory bank of
// patch features from reference images of good parts.
#pragma once

#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <vector>

#include "core/progress.h"
#include "engines/engine.h"
#include "engines/patch/memory_bank.h"
#include "features/backbone.h"

namespace zeroqc {

// Patch descriptors of images already described, by a hash of their pixels: engines built one
// after another from overlapping images (a bench's seeds and shot counts) describe each image once.
// Thread-safe.
class DescriptorCache {
 public:
  std::optional<PatchGrid> Find(const std::string& key) const;
  void Put(const std::string& key, const PatchGrid& grid);

 private:
  mutable std::mutex mu_;
  std::map<std::string, PatchGrid> grids_;
};

struct PatchEngineOptions {
  std::filesystem::path backbone_spec;  // JSON spec of the feature backbone
  PatchOptions patch;
  // Exact search over every reference patch while they are at most this many; above it, a
  // greedy k-centre coreset keeps this many (speed for large reference sets).
  int max_bank_rows = 6400;
  double smoothing_sigma = 4.0;   // Gaussian on the anomaly map, in backbone input pixels
  double threshold_sigmas = 2.0;  // see CalibrateThreshold
  std::optional<double> threshold;      // overrides the calibrated one
  double min_region_fraction = 0.0002;  // smaller regions are noise, not defects
  std::filesystem::path cache_dir;      // empty: no cache
  ImageLimits limits;
  // Zero-shot: the images given to Create are an unlabelled batch of parts, most of them good,
  // that judge each other (mutual scoring); see PatchEngine::Create.
  bool zero_shot = false;
  std::shared_ptr<DescriptorCache> descriptors;  // optional, shared between engines
  int zero_shot_peers = 32;          // other images each image is compared with (16: metal plate AUROC 0.68, 40: 0.75)
  double zero_shot_fraction = 0.3;   // share of the closest peers whose distances are averaged
  // Line memory (0: off): the last `line_window` parts inspected become peers of the next one, beside
  // the references (see PatchEngine::Inspect). Incompatible with a fixed threshold.
  int line_window = 0;
  // The share of a remembered part's patches kept (greedy k-centre coreset) for judging later parts:
  // one search per window part is the window's whole cost. A quarter: 1.6 -> 0.46 s a part with a
  // window of 32 (toothbrush, 2 cores), for -0.01 suite AUROC (docs/BENCHMARKS.md, the line window).
  double line_part_fraction = 0.25;
  // Rotated references (1: off; 4 or 8: every reference is also described turned by 360/N degree
  // steps, its patches added to its own): for parts that lie at any angle. Costs N x the bank
  // before the coreset and N x the reference descriptions.
  int reference_rotations = 1;
  // Foreground mask (engines/patch/foreground.h): background patches never score. Off by default:
  // it hides defects of a product that fills the frame.
  bool foreground_mask = false;
  ProgressFn progress;  // optional: told of each step of Create (references described, coreset, calibration)
};

class PatchEngine : public Engine {
 public:
  // Builds (or loads from the cache) the memory bank of `references` and calibrates the threshold.
  // Zero-shot (options.zero_shot): `references` is an unlabelled batch of at least kMinBatch parts;
  // every image is scored against its peers in the batch (MutualDistances), and the threshold comes
  // from the batch's own scores (CalibrateBatch). Inspect then recognises a batch image by its
  // pixels; any other image is scored against the batch's peers like a batch image.
  static StatusOr<std::unique_ptr<PatchEngine>> Create(const PatchEngineOptions& options,
                                                       const std::vector<std::filesystem::path>& references);

  std::string name() const override { return "patch"; }
  // With a line window, the part is judged like a zero-shot batch image by the window's parts and
  // the references (one peer, and the anchor: what they show is normal however rare on the line),
  // once the window holds kMinBatch - 1 parts; the threshold is then
  // CalibrateBatch over the window's scores. Before that (warming up) by the references alone.
  // The part then joins the window (the oldest leaves). Parts are judged one at a time.
  Inspection Inspect(const Image& image) override;
  // By the references alone (their threshold), never joining the line window.
  Inspection InspectAside(const Image& image) override;
  nlohmann::json Calibration() const override;
  int DecodeSide() const override;
  // One feature extraction and one search: the new part's patches are appended to a copy of the
  // bank (the coreset re-chosen when the bank outgrows max_bank_rows), its score against the
  // references it joins becomes one more leave-one-out score, and the threshold is recalibrated.
  StatusOr<std::unique_ptr<Engine>> WithReference(const std::filesystem::path& reference) const override;
  // A crop around the box through the backbone (see the .cc); kInvalidArgument when the box is not
  // inside the image.
  StatusOr<std::vector<float>> DescribeRegion(const Image& image, const BoundingBox& box) override;

  static constexpr size_t kMinBatch = 8;
  // The line window's bounds: enough parts to judge each other, and memory (~3.7 MB a part with the
  // default backbone) and time (one search per part) within reason.
  static constexpr int kMinLineWindow = int(kMinBatch) - 1, kMaxLineWindow = 128;

  // Line memory (options.line_window > 0), shared by the engines WithReference derives: the recent
  // parts, each with its own bank and its mutual score (NaN until the window first fills).
  struct LinePart {
    std::string key;  // PixelKey: the same photo inspected twice is one part
    MemoryBank bank;  // its patches as a peer: a coreset of line_part_fraction of them
    double score;
    cv::Mat query;    // all its patches, kept only until its own score is known (the window's first fill)
  };
  struct LineMemory {
    std::mutex mu;
    std::deque<LinePart> parts;
  };

  double threshold() const { return threshold_; }
  // Zero-shot: the batch's images and their scores, in the order given to Create.
  const std::vector<std::filesystem::path>& batch() const { return batch_paths_; }
  const std::vector<double>& batch_scores() const { return batch_scores_; }
  // Zero-shot: each batch image's patches (one bank per image, in batch() order).
  const std::vector<MemoryBank>& batch_banks() const { return batch_; }
  const MemoryBank& bank() const { return bank_; }
  bool loaded_from_cache() const { return from_cache_; }
  const std::filesystem::path& cache_file() const { return cache_file_; }

 private:
  PatchEngine() = default;
  StatusOr<PatchGrid> Describe(const cv::Mat& bgr);
  Inspection InspectWith(const Image& image, bool aside);
  // A reference's grid; with reference_rotations its turned copies' patches follow its own rows
  // (the first grid_h x grid_w rows stay the upright image's, which leave-one-out scores).
  StatusOr<PatchGrid> DescribeReference(const cv::Mat& bgr);
  cv::Mat AnomalyMap(const std::vector<float>& distances) const;  // at backbone input size
  // Each patch's distance to the references (NearestDistances) or to peer images (MutualDistances
  // at opt_.zero_shot_fraction), with the background's set to 0 when the foreground mask is on.
  std::vector<float> ReferenceDistances(const cv::Mat& descriptors, int exclude = -1) const;
  std::vector<float> PeerDistances(const cv::Mat& descriptors, const std::vector<const MemoryBank*>& peers,
                                   int anchor = -1) const;
  Status Build(const std::vector<std::filesystem::path>& refs);
  Status BuildBatch(const std::vector<std::filesystem::path>& images);
  std::vector<float> BatchDistances(const Image& image, const PatchGrid& grid) const;
  // Line memory: the part's distances and the threshold they are judged by; sets `out`'s
  // peer_scores (none while the window warms up); remembers the part.
  std::pair<std::vector<float>, double> LineDistances(const Image& image, const PatchGrid& grid, Inspection& out);

  PatchEngineOptions opt_;
  std::shared_ptr<Backbone> backbone_;  // shared with engines derived by WithReference
  MemoryBank bank_;
  double threshold_ = 0;
  bool from_cache_ = false;
  std::filesystem::path cache_file_;
  // Zero-shot state: one bank per batch image, its mutual distances and score, and an index from
  // a hash of its pixels.
  std::vector<MemoryBank> batch_;
  std::vector<std::vector<float>> batch_dist_;
  std::vector<double> batch_scores_;
  std::vector<std::filesystem::path> batch_paths_;
  std::map<std::string, size_t> batch_index_;
  std::shared_ptr<LineMemory> line_;  // null: off
};

// The cache key of a memory bank: backbone, engine parameters and the references' contents.
StatusOr<std::string> MemoryBankKey(const std::string& backbone_fingerprint, const PatchEngineOptions& options,
                                    const std::vector<std::filesystem::path>& references);

}  // namespace zeroqc
