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
};

struct InspectionResult {
  std::string image_path;
  int width = 0, height = 0;
  std::string text;                  // one-sentence summary
  std::vector<DefectObject> objects;
  std::string verdict;               // "OK" or "NOK"; empty when error is set
  double score = 0, threshold = 0;
  std::string engine;
  double timing_ms = 0;
  std::optional<std::string> error;  // set when the image could not be inspected
};

nlohmann::json ToJson(const InspectionResult& r);
nlohmann::json ToJson(const DefectObject& o);

}  // namespace zeroqc
