#include "bench/summary.h"

#include <cmath>
#include <functional>
#include <map>

namespace zeroqc {
namespace {

nlohmann::json Number(double d) { return std::isfinite(d) ? nlohmann::json(d) : nlohmann::json(nullptr); }

using Getter = std::function<double(const Run&)>;
const std::vector<std::pair<const char*, Getter>>& ScalarMetrics() {
  static const std::vector<std::pair<const char*, Getter>> m = {
      {"accuracy", [](const Run& r) { return r.metrics.cls.accuracy; }},
      {"precision", [](const Run& r) { return r.metrics.cls.precision; }},
      {"recall", [](const Run& r) { return r.metrics.cls.recall; }},
      {"specificity", [](const Run& r) { return r.metrics.cls.specificity; }},
      {"f1", [](const Run& r) { return r.metrics.cls.f1; }},
      {"balanced_accuracy", [](const Run& r) { return r.metrics.cls.balanced_accuracy; }},
      {"auroc", [](const Run& r) { return r.metrics.auroc; }},
      {"pixel_auroc", [](const Run& r) { return r.metrics.pixel_auroc; }},
      {"pro", [](const Run& r) { return r.metrics.pro; }},
      {"best_balanced_accuracy", [](const Run& r) { return r.metrics.best_balanced_accuracy; }},
      {"calibration_gap", [](const Run& r) { return r.metrics.calibration_gap; }},
      {"throughput_ips", [](const Run& r) { return r.throughput_ips; }},
      {"setup_ms", [](const Run& r) { return r.setup_ms; }},
  };
  return m;
}

nlohmann::json LatencyJson(const LatencyStats& s) {
  return {{"min", s.min}, {"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"max", s.max}, {"mean", s.mean},
          {"histogram", {{"edges_ms", s.edges}, {"counts", s.counts}}}};
}

nlohmann::json RunJson(const Run& r) {
  nlohmann::json refs = nlohmann::json::array();
  for (const auto& p : r.references) refs.push_back(p.filename().string());
  nlohmann::json j = {{"seed", r.seed}, {"references", refs}, {"threshold", r.threshold},
                      {"wall_ms", r.wall_ms}, {"errors", r.metrics.errors}, {"calibration", r.calibration}};
  for (const auto& [key, get] : ScalarMetrics()) j[key] = Number(get(r));
  const Confusion& c = r.metrics.confusion;
  j["confusion"] = {{"tp", c.tp}, {"fp", c.fp}, {"tn", c.tn}, {"fn", c.fn}};
  j["best_threshold"] = Number(r.metrics.best_threshold);
  j["best_threshold_factor"] = Number(r.metrics.best_threshold_factor);
  std::vector<double> ms;
  for (const auto& rec : r.records) ms.push_back(rec.latency_ms);
  j["latency_ms"] = LatencyJson(Latency(ms));
  if (!r.types.is_null()) j["types"] = r.types;
  return j;
}

}  // namespace

nlohmann::json Summarize(const Dataset& d, const std::vector<Run>& runs, const BenchConfig& cfg) {
  nlohmann::json j;
  j["dataset"] = d.root.string();
  j["engine"] = cfg.engine;
  j["shots"] = cfg.shots;
  j["pool"] = d.pool.size();
  j["seeds"] = cfg.seeds;
  j["jobs"] = cfg.jobs;
  j["images"] = d.samples.size();
  j["nok_images"] = std::count_if(d.samples.begin(), d.samples.end(), [](const Sample& s) { return s.nok; });
  for (const auto& [key, get] : ScalarMetrics()) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(get(r));
    auto a = Aggregate(v);
    j[key] = Number(a.mean);
    j["spread"][key] = Number(a.sd);
  }
  std::vector<double> tp, fp, tn, fn, ms;
  int errors = 0;
  for (const auto& r : runs) {
    tp.push_back(r.metrics.confusion.tp), fp.push_back(r.metrics.confusion.fp);
    tn.push_back(r.metrics.confusion.tn), fn.push_back(r.metrics.confusion.fn);
    errors += r.metrics.errors;
    for (const auto& rec : r.records) ms.push_back(rec.latency_ms);
  }
  j["confusion"] = {{"tp", Aggregate(tp).mean}, {"fp", Aggregate(fp).mean}, {"tn", Aggregate(tn).mean}, {"fn", Aggregate(fn).mean}};
  j["errors"] = errors;
  // Model token accounting (vision-language engine): totals and means per inspected image.
  nlohmann::json usage = nlohmann::json::object();
  size_t with_usage = 0;
  int attempts = 0;
  for (const auto& r : runs)
    for (const auto& rec : r.records) {
      attempts += rec.result.attempts;
      if (!rec.result.usage.is_object()) continue;
      ++with_usage;
      for (const auto& [k, v] : rec.result.usage.items())
        if (v.is_number() && k != "model_latency_ms") usage[k] = usage.value(k, 0.0) + v.get<double>();
    }
  if (with_usage > 0) {
    nlohmann::json per_image;
    for (const auto& [k, v] : usage.items()) per_image[k] = v.get<double>() / with_usage;
    usage["per_image"] = per_image;
    usage["requests"] = attempts;
    j["usage"] = usage;
  }
  j["latency_ms"] = LatencyJson(Latency(ms));
  // Cascade engine: how many parts went to the model, what they cost, and latency per route.
  std::map<std::string, std::vector<double>> by_route;
  size_t parts = 0, to_model = 0;
  for (const auto& r : runs)
    for (const auto& rec : r.records) {
      ++parts;
      if (rec.result.route.empty()) continue;
      by_route[rec.result.route].push_back(rec.latency_ms);
      to_model += rec.result.attempts > 0 || rec.result.route == "model_failed";
    }
  if (!by_route.empty()) {  // tokens: the totals of `usage` above, over every part
    const double input_tokens = usage.value("input_tokens", 0.0), output_tokens = usage.value("output_tokens", 0.0);
    nlohmann::json routes = nlohmann::json::object();
    for (const auto& [route, v] : by_route)
      routes[route] = {{"parts", v.size()}, {"share", double(v.size()) / parts}, {"latency_ms", LatencyJson(Latency(v))}};
    j["cascade"] = {{"share_to_model", double(to_model) / parts}, {"requests_per_part", double(attempts) / parts},
                    {"input_tokens_per_part", input_tokens / parts}, {"output_tokens_per_part", output_tokens / parts},
                    {"routes", routes}};
  }
  if (!runs.empty()) {
    // The first run's scores by class: the report's histogram against its threshold.
    const Run& first = runs.front();
    nlohmann::json good = nlohmann::json::array(), nok = nlohmann::json::array();
    for (const auto& rec : first.records)
      if (!rec.result.error) (d.samples[rec.sample].nok ? nok : good).push_back(rec.result.score);
    j["scores"] = {{"seed", first.seed}, {"threshold", first.threshold}, {"best_threshold", Number(first.metrics.best_threshold)},
                   {"best_threshold_factor", Number(first.metrics.best_threshold_factor)},
                   {"good", good}, {"nok", nok}};
    for (const auto& [type, t] : runs.front().metrics.per_type) {
      std::vector<double> acc, auroc, pix, pro;
      for (const auto& r : runs) {
        const TypeMetrics& x = r.metrics.per_type.at(type);
        acc.push_back(double(x.correct) / x.images);
        auroc.push_back(x.auroc), pix.push_back(x.pixel_auroc), pro.push_back(x.pro);
      }
      j["per_type"][type] = {{"images", t.images}, {"accuracy", Number(Aggregate(acc).mean)},
                             {"auroc", Number(Aggregate(auroc).mean)}, {"pixel_auroc", Number(Aggregate(pix).mean)},
                             {"pro", Number(Aggregate(pro).mean)}};
    }
  }
  // Defect types named from examples (--type-shots): mean and spread over the runs.
  std::vector<double> type_acc;
  std::map<std::string, std::vector<double>> per_type_acc;
  for (const auto& r : runs) {
    if (r.types.is_null() || !r.types["accuracy"].is_number()) continue;
    type_acc.push_back(r.types["accuracy"]);
    for (const auto& [type, t] : r.types["per_type"].items()) per_type_acc[type].push_back(t["accuracy"]);
  }
  if (!type_acc.empty()) {
    nlohmann::json per_type = nlohmann::json::object();
    for (const auto& [type, v] : per_type_acc) per_type[type] = Number(Aggregate(v).mean);
    j["types"] = {{"accuracy", Number(Aggregate(type_acc).mean)}, {"accuracy_sd", Number(Aggregate(type_acc).sd)},
                  {"chance", runs.front().types["chance"]}, {"examples_per_type", runs.front().types["examples_per_type"]},
                  {"per_type", per_type}};
  }
  j["runs"] = nlohmann::json::array();
  for (const auto& r : runs) j["runs"].push_back(RunJson(r));
  return j;
}

nlohmann::json RecordJson(const Dataset& d, const Run& run, const Record& rec) {
  nlohmann::json j = ToJson(rec.result);
  const Sample& s = d.samples[rec.sample];
  j["bench"] = {{"seed", run.seed},
                {"type", s.type},
                {"expected", s.nok ? "NOK" : "OK"},
                {"predicted", rec.predicted_nok() ? "NOK" : "OK"},
                {"correct", s.nok == rec.predicted_nok()},
                {"latency_ms", rec.latency_ms}};
  return j;
}

}  // namespace zeroqc
