// Runs an engine over a benchmark dataset: K-shot reference draws over seeds, a pool of `jobs`
// workers, per-image latency, and the metrics of each run. Engine-neutral: engines come from a factory.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "bench/dataset.h"
#include "bench/metrics.h"
#include "engines/engine.h"

namespace zeroqc {

// Builds an engine from a set of reference images (the patch engine builds its memory bank).
using EngineFactory =
    std::function<StatusOr<std::unique_ptr<Engine>>(const std::vector<std::filesystem::path>& references)>;

struct Record {
  size_t sample = 0;  // index into Dataset::samples
  InspectionResult result;
  double latency_ms = 0;  // decode + inspect, as a caller sees it
  // Anomaly map in units of the record's threshold (1 = threshold: comparable across records when
  // the threshold moves, like the image scores Evaluate ranks), at most BenchOptions::map_side on
  // its long side. From the heat map when the engine has one, else the NOK boxes filled with their
  // score (or 1) over the threshold.
  cv::Mat map;
  bool map_is_heatmap = false;  // false: rasterised boxes
  // --type-shots (defective samples): the part's region descriptor as one to name, and as an example
  // (from the ground truth's box; empty: the same as `descriptor`). See NamingDescriptors in runner.cc.
  std::vector<float> descriptor, example_descriptor;
  // An image that could not be inspected counts as NOK: a real line would stop the part.
  bool predicted_nok() const { return result.error.has_value() || result.verdict == "NOK"; }
};

struct TypeMetrics {
  int images = 0, correct = 0;
  double auroc, pixel_auroc, pro;  // this type's images against all good ones; NaN for "good"
};

struct RunMetrics {
  Confusion confusion;
  Classification cls;
  double auroc, pixel_auroc, pro;  // NaN when undefined (one class, no masks)
  // Best balanced accuracy over all thresholds minus the one at the engine's own threshold.
  double best_balanced_accuracy, calibration_gap;
  // Where the best balanced accuracy is reached (BestThreshold): as a multiple of the engine's own
  // threshold, and as a score when every part had the same threshold (else NaN: a line window's moves).
  double best_threshold_factor, best_threshold;
  int errors = 0;
  std::map<std::string, TypeMetrics> per_type;
};

struct Run {
  uint64_t seed = 0;
  std::vector<std::filesystem::path> references;
  double threshold = 0;            // as the engine reported it
  nlohmann::json calibration;      // Engine::Calibration()
  double setup_ms = 0, wall_ms = 0;  // engine construction; inspecting all samples
  double throughput_ips = 0;
  std::vector<Record> records;  // in sample order
  RunMetrics metrics;
  nlohmann::json types;  // NameTypes with BenchOptions::type_shots, else null
};

struct BenchProgress {
  int run = 0, runs = 0;
  size_t done = 0, total = 0;
  std::string stage;  // "references" while the engine is built, then "inspect"
};

struct BenchOptions {
  size_t shots = 0;  // 0: the whole pool
  // How each run's references are drawn from the pool (null: a seeded random draw, DrawShots).
  using Draw = std::function<StatusOr<std::vector<std::filesystem::path>>(const std::vector<std::filesystem::path>& pool,
                                                                          size_t shots, uint64_t seed)>;
  Draw draw;
  // Zero-shot: the factory gets the test images themselves (the batch that judges itself) in
  // place of references, and the pool is not used.
  bool zero_shot = false;
  int seeds = 1;
  uint64_t first_seed = 1;
  int jobs = 1;
  // The engine learns from the parts it sees (a line window): each seed inspects the test images
  // one at a time, in an order drawn from the seed, as a line would produce them.
  bool stream = false;
  // With stream: this many pool images not drawn as references (good parts) pass first, unscored,
  // as the line's parts before the test images (a window starts full, as it would on a running line).
  size_t warmup = 0;
  ImageLimits limits;
  int map_side = 256;  // pixel metrics at this resolution: memory, and MVTec practice; only the first
                       // run keeps its maps afterwards (for the report's gallery)
  std::function<void(const BenchProgress&)> progress;  // called from worker threads, serialised
  int type_shots = 0;  // > 0: name defect types from this many examples per type (bench/types.h)
};

StatusOr<std::vector<Run>> RunBench(const Dataset& dataset, const EngineFactory& factory, const BenchOptions& options);

// The metrics of one run's records (all of dataset.samples, in order).
RunMetrics Evaluate(const Dataset& dataset, const std::vector<Record>& records);

}  // namespace zeroqc
