#include "core/result.h"

namespace zeroqc {

nlohmann::json ToJson(const BoundingBox& b) {
  return {{"x_min", b.x_min}, {"y_min", b.y_min}, {"x_max", b.x_max}, {"y_max", b.y_max}};
}

nlohmann::json ToJson(const DefectObject& o) {
  nlohmann::json j = {{"name", o.name},
                      {"color", o.color},
                      {"qc", o.qc},
                      {"reason", o.reason},
                      {"bounding_box", nullptr}};
  if (o.has_box) j["bounding_box"] = ToJson(o.box);
  if (o.score) j["score"] = *o.score;
  return j;
}

nlohmann::json ToJson(const InspectionResult& r) {
  nlohmann::json j;
  j["image"] = {{"path", r.image_path}, {"width", r.width}, {"height", r.height}};
  j["engine"] = r.engine;
  if (!r.model.empty()) j["model"] = r.model;
  if (!r.usage.is_null()) j["usage"] = r.usage;
  if (r.attempts > 0) j["attempts"] = r.attempts, j["latency_ms"] = r.latency_ms;
  if (!r.route.empty()) j["route"] = r.route;
  if (!r.stages.is_null()) j["stages"] = r.stages;
  if (r.error) {
    j["error"] = *r.error;
    j["text"] = "not inspected: " + *r.error;
    j["objects"] = nlohmann::json::array();
    j["verdict"] = nullptr;
    return j;
  }
  j["text"] = r.text;
  j["objects"] = nlohmann::json::array();
  for (const auto& o : r.objects) j["objects"].push_back(ToJson(o));
  j["verdict"] = r.verdict;
  j["score"] = r.score;
  j["threshold"] = r.threshold;
  if (!r.calibration.empty()) j["calibration"] = r.calibration;
  j["timing_ms"] = r.timing_ms;
  return j;
}

}  // namespace zeroqc
