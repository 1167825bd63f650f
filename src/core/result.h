// The inspection result in the reference schema ({"text", "objects": [...]}) plus zeroqc's fields.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace zeroqc {

struct BoundingBox {  // original image pixels, inclusive-exclusive: x_max/y_max are one past the region
  int x_min = 0, y_min = 0, x_max = 0, y_max = 0;
};

struct DefectObject {
  std::string name;    // what the object is, e.g. "anomaly"
  std::string color;   // dominant colour of the region, in words
  std::string qc;      // "OK" or "NOK"
  std::string reason;  // why it was judged so
  BoundingBox box;
  std::optional<double> score;  // the region's peak anomaly score (embedded engine)
  bool has_box = true;  // false when the model gave no usable box ("bounding_box": null)
};

struct InspectionResult {
  std::string image_path;
  int width = 0, height = 0;
  std::string text;                  // one-sentence summary
  std::vector<DefectObject> objects;
  std::string verdict;               // "OK" or "NOK"; empty when error is set
  double score = 0, threshold = 0;
  // Embedded engine: what set the threshold: "references" (their own scores), "line" (the line
  // window's recent parts), "batch" (zero-shot) or "fixed" (a threshold set by hand); empty for the others.
  std::string calibration;
  std::string engine;
  double timing_ms = 0;
  std::optional<std::string> error;
  // Vision-language engine: the model, its token usage as the provider reports it, and how many
  // requests it took (retries, repair); null / 0 for the embedded engine.
  std::string model;
  nlohmann::json usage;
  int attempts = 0;
  double latency_ms = 0;  // time spent waiting on the model, all attempts
  // Cascade engine: which way the part went ("screen_ok", "screen_nok", "model", "model_failed",
  // "explained") and each stage's verdict, score, latency and tokens; empty for the others.
  std::string route;
  nlohmann::json stages;
};

nlohmann::json ToJson(const InspectionResult& r);
nlohmann::json ToJson(const DefectObject& o);
nlohmann::json ToJson(const BoundingBox& b);  // {"x_min", "y_min", "x_max", "y_max"}

}  // namespace zeroqc
