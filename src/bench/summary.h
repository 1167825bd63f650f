// The machine-readable outcome of a bench: metrics.json (means over seeds, spreads, per type,
// latency, each run) and one results.jsonl line per inspection.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "bench/runner.h"

namespace zeroqc {

struct BenchConfig {
  std::string engine;
  size_t shots = 0;  // references per run
  int seeds = 1, jobs = 1;
};

// Keys: accuracy, precision, recall, specificity, f1, balanced_accuracy, auroc, pixel_auroc, pro,
// best_balanced_accuracy, calibration_gap (means over runs; undefined values are null), spread{same keys: sample standard deviation},
// confusion{tp,fp,tn,fn} (means), latency_ms{min,p50,p90,p99,max,mean,histogram} over all runs,
// throughput_ips, setup_ms, errors, images, per_type{type: {images, accuracy, auroc, pixel_auroc, pro}},
// runs[{seed, references, threshold, ...}], scores{seed, threshold, good[], nok[]} (the first run's
// image scores by class, for the report's histogram), and the configuration.
nlohmann::json Summarize(const Dataset& dataset, const std::vector<Run>& runs, const BenchConfig& config);

// One results.jsonl line: the inspection as `zeroqc inspect` prints it, plus a "bench" object with
// seed, type, expected, predicted, correct and latency_ms.
nlohmann::json RecordJson(const Dataset& dataset, const Run& run, const Record& record);

}  // namespace zeroqc
