// The embedded engine: few-shot, training-free anomaly detection against a memory bank of
// patch features from reference images of good parts.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "engines/engine.h"
#include "engines/patch/memory_bank.h"
#include "features/backbone.h"

namespace zeroqc {

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
};

class PatchEngine : public Engine {
 public:
  // Builds (or loads from the cache) the memory bank of `references` and calibrates the threshold.
  static StatusOr<std::unique_ptr<PatchEngine>> Create(const PatchEngineOptions& options,
                                                       const std::vector<std::filesystem::path>& references);

  std::string name() const override { return "patch"; }
  Inspection Inspect(const Image& image) override;

  double threshold() const { return threshold_; }
  const MemoryBank& bank() const { return bank_; }
  bool loaded_from_cache() const { return from_cache_; }
  const std::filesystem::path& cache_file() const { return cache_file_; }

 private:
  PatchEngine() = default;
  StatusOr<PatchGrid> Describe(const cv::Mat& bgr);
  cv::Mat AnomalyMap(const std::vector<float>& distances) const;  // at backbone input size
  Status Build(const std::vector<std::filesystem::path>& refs);

  PatchEngineOptions opt_;
  std::unique_ptr<Backbone> backbone_;
  MemoryBank bank_;
  double threshold_ = 0;
  bool from_cache_ = false;
  std::filesystem::path cache_file_;
};

// The cache key of a memory bank: backbone, engine parameters and the references' contents.
StatusOr<std::string> MemoryBankKey(const std::string& backbone_fingerprint, const PatchEngineOptions& options,
                                    const std::vector<std::filesystem::path>& references);

}  // namespace zeroqc
