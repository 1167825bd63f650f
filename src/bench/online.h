// The online benchmark (zeroqc bench --online): a simulated line. The engine starts from K
// references; the rest of the reference pool streams past in a seeded order (optionally mixed
// with defective parts); a simulated operator reviews every NOK verdict against the ground truth
// and each false alarm becomes a reference (Engine::WithReference, as a review does it in the
// service); optionally the auto rule adds confident OK parts too. The held-out test set is scored
// every few parts: the learning curve, and what it cost the operator.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/dataset.h"
#include "bench/runner.h"
#include "core/progress.h"

namespace zeroqc {

struct OnlineOptions {
  size_t shots = 1;
  int seeds = 1;
  uint64_t first_seed = 1;
  size_t stream = 0;         // parts streamed; 0: every pool image that is not a starting reference
  double defect_rate = 0;    // share of the stream that is defective, drawn from the test set's defects (then not scored)
  int eval_every = 5;        // the held-out set is scored after every this many parts
  double auto_margin = 0;    // > 0: an OK part scoring below margin x threshold joins the references...
  int auto_max = 0;          // ...up to this many
  ImageLimits limits;
  ProgressFn progress;
};

struct OnlinePoint {
  size_t parts = 0;          // streamed so far
  size_t references = 0;
  int false_alarms = 0;      // corrected so far (each became a reference)
  double accuracy = 0, balanced_accuracy = 0, threshold = 0;
};

struct OnlineRun {
  uint64_t seed = 0;
  std::vector<OnlinePoint> curve;
  int reviews = 0;           // NOK verdicts the operator looked at
  int false_alarms = 0;      // of those, good parts: each became a reference
  int auto_added = 0, auto_added_defects = 0;  // by the auto rule; a defect taught is its risk made real
  int stream_defects = 0, escaped_defects = 0; // defective parts in the stream judged OK
  size_t test_images = 0;
};

StatusOr<std::vector<OnlineRun>> RunOnline(const Dataset& dataset, const EngineFactory& factory, const OnlineOptions& options);

// metrics.json's "online": {final_accuracy, reviews, false_alarms, curve: [{parts, accuracy, ...}], runs}
// (means and spreads over the seeds).
nlohmann::json OnlineJson(const std::vector<OnlineRun>& runs, const OnlineOptions& options);

}  // namespace zeroqc
