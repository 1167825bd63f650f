#include "engines/cascade/cascade_engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "engines/patch/regions.h"

namespace zeroqc {
namespace {

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string Box(const BoundingBox& b) {
  return "(" + std::to_string(b.x_min) + ", " + std::to_string(b.y_min) + ")-(" + std::to_string(b.x_max) + ", " +
         std::to_string(b.y_max) + ")";
}

double Area(const BoundingBox& b) { return double(b.x_max - b.x_min) * (b.y_max - b.y_min); }

double Overlap(const BoundingBox& a, const BoundingBox& b) {  // intersection over union
  const double w = std::min(a.x_max, b.x_max) - std::max(a.x_min, b.x_min), h = std::min(a.y_max, b.y_max) - std::max(a.y_min, b.y_min);
  if (w <= 0 || h <= 0) return 0;
  return w * h / (Area(a) + Area(b) - w * h);
}

// The hottest regions of the screen's heat map (threshold units): boxes in original pixels.
std::vector<BoundingBox> HotRegions(const cv::Mat& heat, int width, int height, int count) {
  std::vector<BoundingBox> out;
  if (heat.empty() || count <= 0) return out;
  double peak = 0;
  cv::minMaxLoc(heat, nullptr, &peak);
  if (peak <= 0) return out;
  const double sx = double(width) / heat.cols, sy = double(height) / heat.rows;
  for (const auto& reg : ExtractRegions(heat, 0.6 * peak, 1)) {  // where it differs most, whatever the verdict
    out.push_back({int(reg.box.x * sx), int(reg.box.y * sy), int(std::ceil((reg.box.x + reg.box.width) * sx)),
                   int(std::ceil((reg.box.y + reg.box.height) * sy))});
    if (int(out.size()) == count) break;
  }
  return out;
}

// A crop of `box` (original pixels) from the decoded image, with context around it.
cv::Mat Crop(const cv::Mat& bgr, const BoundingBox& box, int width, int height) {
  const double fx = double(bgr.cols) / width, fy = double(bgr.rows) / height;
  cv::Rect r(cv::Point(int(box.x_min * fx), int(box.y_min * fy)), cv::Point(int(box.x_max * fx), int(box.y_max * fy)));
  const int pad = std::max({r.width / 2, r.height / 2, 32});
  r = cv::Rect(r.x - pad, r.y - pad, r.width + 2 * pad, r.height + 2 * pad) & cv::Rect(0, 0, bgr.cols, bgr.rows);
  return r.area() > 0 ? bgr(r).clone() : cv::Mat();
}

// The middle of `scores` (the upper one of an even count) over the threshold `t`.
double MiddleRatio(std::vector<double> scores, double t) {
  std::nth_element(scores.begin(), scores.begin() + scores.size() / 2, scores.end());
  return scores[scores.size() / 2] / t;
}

// The uncertainty of a threshold set from `n` parts' scores (a +-50% prior for one).
double Uncertainty(double n) { return 0.5 / std::sqrt(std::max(n, 1.0)); }

// Every default band is kept within [0.3, 0.95] x [1.05, 3] of the threshold.
std::pair<double, double> Clamped(double low, double high) {
  return {std::clamp(low, 0.3, 0.95), std::clamp(high, 1.05, 3.0)};
}

}  // namespace

std::pair<double, double> CascadeBand(const nlohmann::json& c) {
  if (!c.is_object() || !c.contains("threshold") || !c.contains("loo_scores") || c["loo_scores"].empty()) return {0.8, 1.5};
  std::vector<double> s = c["loo_scores"].get<std::vector<double>>();
  const double t = c["threshold"].get<double>();
  if (t <= 0) return {0.8, 1.5};
  const double m = MiddleRatio(s, t);
  const double u = Uncertainty(c.contains("references") ? c["references"].get<double>() : double(s.size()));
  return Clamped(std::min(m, 1.0 / (1.0 + u)), std::max(1.0 + 2.0 * (1.0 - m), 1.0 + u));
}

std::pair<double, double> CascadeLineBand(const std::vector<double>& peer_scores, double threshold) {
  std::vector<double> ok;
  for (double s : peer_scores)
    if (s <= threshold) ok.push_back(s);
  if (threshold <= 0 || ok.empty()) return CascadeBand({{"threshold", threshold}, {"loo_scores", peer_scores}});
  const double u = Uncertainty(double(peer_scores.size()));
  return Clamped(std::min(MiddleRatio(std::move(ok), threshold), 1.0 / (1.0 + u)), 1.0 + u);
}

StatusOr<std::unique_ptr<CascadeEngine>> CascadeEngine::Create(std::unique_ptr<Engine> screen, std::unique_ptr<VlmEngine> judge,
                                                               CascadeOptions options) {
  if (!screen || !judge) return InvalidArgument("the cascade needs an embedded engine and a model engine");
  auto e = std::unique_ptr<CascadeEngine>(new CascadeEngine());
  const auto [low, high] = CascadeBand(screen->Calibration());
  options.low_set = options.low > 0, options.high_set = options.high > 0;
  if (options.low <= 0) options.low = low;
  if (options.high <= 0) options.high = high;
  if (options.low > options.high) return InvalidArgument("cascade band: low must not exceed high");
  e->screen_ = std::move(screen);
  e->judge_ = std::move(judge);
  e->opt_ = options;
  return e;
}

nlohmann::json CascadeEngine::Calibration() const {
  return {{"screen", screen_->Calibration()}, {"low", opt_.low}, {"high", opt_.high}, {"explain_nok", opt_.explain_nok}};
}

Inspection CascadeEngine::Inspect(const Image& image) {
  const auto t0 = std::chrono::steady_clock::now();
  Inspection a = screen_->Inspect(image);
  Inspection out;
  out.heatmap = a.heatmap;
  InspectionResult& r = out.result;
  r = a.result;
  r.engine = name();
  r.stages = nlohmann::json::array();
  nlohmann::json screen = {{"stage", "screen"}, {"engine", a.result.engine}, {"latency_ms", a.result.timing_ms}};
  if (a.result.error) {
    screen["error"] = *a.result.error;
    r.stages.push_back(screen);
    r.route = "screen_failed";
    return out;
  }
  screen["verdict"] = a.result.verdict, screen["score"] = a.result.score, screen["threshold"] = a.result.threshold;
  const double ratio = a.result.threshold > 0 ? a.result.score / a.result.threshold : 0;
  auto [low, high] = std::pair{opt_.low, opt_.high};
  const bool by_line = !a.peer_scores.empty();  // a line window judged it beside the references
  if (by_line) {
    const auto line = CascadeLineBand(a.peer_scores, a.result.threshold);
    if (!opt_.low_set) low = line.first;
    if (!opt_.high_set) high = line.second;
  }
  screen["band"] = {low, high};
  if (by_line) screen["peers"] = a.peer_scores.size();
  const bool uncertain = ratio >= low && ratio <= high;
  r.stages.push_back(screen);
  if (!uncertain && !(opt_.explain_nok && a.result.verdict == "NOK")) {
    r.route = ratio < low ? "screen_ok" : "screen_nok";
    r.timing_ms = MsSince(t0);
    return out;
  }

  // The screen's evidence: where it differs most, as crops with their place in the whole image.
  const auto hot = HotRegions(a.heatmap, r.width, r.height, opt_.crops);
  VlmEngine::Evidence ev;
  char note[600];
  std::snprintf(note, sizeof note,
                "An anomaly detector compared this part with the reference images%s: its score is %.2f times its threshold "
                "(it is unsure between %.2f and %.2f). The %zu crop(s) below show where this part differs most from the "
                "references; such a difference is not necessarily a defect: judge it by the rules. Give every box in pixels "
                "of the image to inspect (%d x %d as sent to you may be scaled), not of a crop.",
                by_line ? " and the line's recent parts" : "", ratio, low, high, hot.size(), r.width, r.height);
  ev.note = note;
  for (size_t i = 0; i < hot.size(); ++i) {
    cv::Mat c = Crop(image.bgr, hot[i], r.width, r.height);
    if (c.empty()) continue;
    ev.crops.emplace_back("Crop " + std::to_string(i + 1) + " of " + std::to_string(hot.size()) + ": the region " + Box(hot[i]) +
                              " of the image to inspect (original " + std::to_string(r.width) + "x" + std::to_string(r.height) +
                              " pixels), with some context around it.",
                          std::move(c));
  }
  Inspection b = judge_->Inspect(image, ev);
  const InspectionResult& m = b.result;
  nlohmann::json model = {{"stage", "model"}, {"engine", m.engine}, {"model", m.model}, {"latency_ms", m.timing_ms},
                          {"attempts", m.attempts}, {"usage", m.usage}, {"crops", ev.crops.size()}};
  r.model = m.model, r.usage = m.usage, r.attempts = m.attempts, r.latency_ms = m.latency_ms;
  if (m.error) {  // the embedded verdict stands, and says so
    model["error"] = *m.error;
    r.route = "model_failed";
    r.text = a.result.text + " [the model failed (" + *m.error + "): the embedded engine's verdict stands]";
  } else if (uncertain) {  // the model decides
    model["verdict"] = m.verdict;
    r.route = "model";
    r.verdict = m.verdict;
    r.text = m.text;
    r.objects = m.objects;
    for (size_t i = 0; i < r.objects.size(); ++i)  // a NOK without a box is placed where the screen saw the most
      if (!r.objects[i].has_box && r.objects[i].qc == "NOK" && !hot.empty())
        r.objects[i].box = hot[std::min(i, hot.size() - 1)], r.objects[i].has_box = true;
  } else {  // explained: the screen's boxes, the model's words
    model["verdict"] = m.verdict;
    r.route = "explained";
    std::vector<const DefectObject*> named;
    for (const auto& o : m.objects)
      if (o.qc == "NOK") named.push_back(&o);
    for (auto& o : r.objects) {
      const DefectObject* best = named.empty() ? nullptr : named.front();
      double overlap = 0;
      for (const auto* n : named)
        if (const double x = n->has_box ? Overlap(n->box, o.box) : 0; x > overlap) overlap = x, best = n;
      if (!best) continue;
      o.name = best->name, o.color = best->color.empty() ? o.color : best->color;
      o.reason = best->reason + " (located by the anomaly detector: " + o.reason + ")";
    }
    if (named.empty()) r.text += " [the model saw no defect: " + m.text + "]";
  }
  r.stages.push_back(model);
  r.timing_ms = MsSince(t0);
  return out;
}

}  // namespace zeroqc
