#include "bench/report.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <sstream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/base64.h"
#include "image/overlay.h"

namespace zeroqc {
namespace {

std::string Escape(const std::string& s) { return HtmlEscape(s); }

}  // namespace

std::string HtmlEscape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

namespace {

std::string Fmt(const nlohmann::json& v, int digits = 3) {
  if (!v.is_number()) return "&mdash;";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v.get<double>());
  return b;
}

const char* kStyle = R"(
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
.meta{color:#555} table{border-collapse:collapse;margin:.5em 0} td,th{padding:.25em .8em;border:1px solid #ddd;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left} .charts{display:flex;gap:2em;flex-wrap:wrap}
.nok{color:#b00020;font-weight:600} .ok{color:#08711e;font-weight:600}
.gallery{display:flex;flex-wrap:wrap;gap:1em} figure{margin:0;width:360px} figure img{width:100%;border:1px solid #ccc}
figcaption{font-size:12px;color:#333} svg text{font:11px system-ui,sans-serif;fill:#333}
.verdict{font-size:1.15em;padding:.6em .9em;border-left:6px solid #999;background:#f6f6f6}
.verdict.ok{border-color:#08711e} .verdict.warn{border-color:#c98a00} .verdict.nok{border-color:#b00020}
.thumbs{display:flex;flex-wrap:wrap;gap:.5em} .thumbs figure.thumb{width:120px} .thumbs img{width:120px;border:1px solid #ccc}
)";

void MetricTable(std::ostringstream& h, const nlohmann::json& s) {
  const bool spread = s["seeds"].get<int>() > 1;
  h << "<h2 id=\"metrics\">Verdicts at the engine's own threshold (NOK = positive)</h2>\n<table>\n<tr><th>metric</th><th>value</th>"
    << (spread ? "<th>&plusmn; sd over seeds</th>" : "") << "</tr>\n";
  const std::pair<const char*, const char*> rows[] = {
      {"accuracy", "Accuracy"}, {"precision", "Precision"}, {"recall", "Recall"}, {"specificity", "Specificity"},
      {"f1", "F1"}, {"balanced_accuracy", "Balanced accuracy"}, {"auroc", "Image AUROC"},
      {"pixel_auroc", "Pixel AUROC"}, {"pro", "PRO (FPR &le; 0.3)"}};
  for (auto [key, label] : rows) {
    h << "<tr><td>" << label << "</td><td>" << Fmt(s[key]) << "</td>";
    if (spread) h << "<td>" << Fmt(s["spread"][key]) << "</td>";
    h << "</tr>\n";
  }
  h << "</table>\n";
  // Counts are whole parts: the first run's, with the mean over seeds beside it when there are several.
  const auto& c = s["runs"].empty() ? s["confusion"] : s["runs"][0]["confusion"];
  auto count = [&](const char* k) {
    std::string out = Fmt(c[k], 0);
    if (spread) out += " <span class=\"meta\">(mean " + Fmt(s["confusion"][k], 1) + ")</span>";
    return out;
  };
  h << "<table id=\"confusion\">\n<tr><th>actual \\ predicted" << (spread ? ", seed " + std::to_string(s["runs"][0]["seed"].get<uint64_t>()) : "")
    << "</th><th>NOK</th><th>OK</th></tr>\n"
    << "<tr><td>NOK</td><td>" << count("tp") << "</td><td>" << count("fn") << "</td></tr>\n"
    << "<tr><td>OK</td><td>" << count("fp") << "</td><td>" << count("tn") << "</td></tr>\n</table>\n";
  if (s["errors"].get<int>() > 0)
    h << "<p class=\"nok\">" << s["errors"].get<int>() << " image(s) could not be inspected; they count as NOK.</p>\n";
}

void CalibrationNote(std::ostringstream& h, const nlohmann::json& s) {
  if (!s.contains("calibration_gap") || !s["calibration_gap"].is_number()) return;
  h << "<p id=\"calibration\">Calibration gap <b>" << Fmt(s["calibration_gap"]) << "</b>: the best threshold for "
    << "these labels would reach a balanced accuracy of " << Fmt(s["best_balanced_accuracy"]) << ", the engine's own "
    << "threshold (chosen without labels) reaches " << Fmt(s["balanced_accuracy"]) << ".";
  if (s.contains("scores") && s["scores"]["best_threshold"].is_number())
    h << " For seed " << s["scores"]["seed"].get<uint64_t>() << " the engine chose <b>" << Fmt(s["scores"]["threshold"])
      << "</b>; the best threshold is <b id=\"best-threshold\">" << Fmt(s["scores"]["best_threshold"]) << "</b> (balanced accuracy "
      << Fmt(s["runs"][0]["best_balanced_accuracy"]) << "): to use it, set <code>\"threshold\"</code> in the product's zeroqc.json.";
  else if (s.contains("scores") && s["scores"]["best_threshold_factor"].is_number())
    h << " The threshold moved from part to part (a line window); for seed " << s["scores"]["seed"].get<uint64_t>()
      << " the best would have been <b id=\"best-threshold\">" << Fmt(s["scores"]["best_threshold_factor"], 2)
      << " &times;</b> the engine's (balanced accuracy " << Fmt(s["runs"][0]["best_balanced_accuracy"]) << ").";
  h << "</p>\n";
  if (s.contains("scores")) h << ScoreHistogramSvg(s["scores"], "Image scores of the first run (seed " +
                                                     std::to_string(s["scores"]["seed"].get<uint64_t>()) + ")");
}

void PerTypeTable(std::ostringstream& h, const nlohmann::json& s) {
  h << "<h2 id=\"per-type\">Per type</h2>\n<table>\n<tr><th>type</th><th>images</th><th>judged correctly</th>"
       "<th>AUROC vs good</th><th>pixel AUROC</th><th>PRO</th></tr>\n";
  for (const auto& [type, t] : s["per_type"].items())
    h << "<tr><td>" << Escape(type) << "</td><td>" << t["images"].get<int>() << "</td><td>" << Fmt(t["accuracy"])
      << "</td><td>" << Fmt(t["auroc"]) << "</td><td>" << Fmt(t["pixel_auroc"]) << "</td><td>" << Fmt(t["pro"])
      << "</td></tr>\n";
  h << "</table>\n";
}

void RocSvg(std::ostringstream& h, const Dataset& d, const std::vector<Run>& runs) {
  const int size = 300, pad = 40, plot = size - pad - 10;
  h << "<figure id=\"roc\" style=\"width:auto\"><svg width=\"" << size << "\" height=\"" << size
    << "\" viewBox=\"0 0 " << size << " " << size << "\">\n"
    << "<rect x=\"" << pad << "\" y=\"10\" width=\"" << plot << "\" height=\"" << plot << "\" fill=\"none\" stroke=\"#999\"/>\n"
    << "<line x1=\"" << pad << "\" y1=\"" << 10 + plot << "\" x2=\"" << pad + plot << "\" y2=\"10\" stroke=\"#bbb\" stroke-dasharray=\"4 4\"/>\n";
  for (int i = 0; i <= 4; ++i) {
    double v = i / 4.0;
    h << "<text x=\"" << pad + v * plot - 8 << "\" y=\"" << size - 16 << "\">" << v << "</text>"
      << "<text x=\"" << pad - 28 << "\" y=\"" << 14 + plot - v * plot << "\">" << v << "</text>\n";
  }
  h << "<text x=\"" << pad + plot / 2 - 50 << "\" y=\"" << size - 2 << "\">false-positive rate</text>"
    << "<text transform=\"rotate(-90)\" x=\"" << -(10 + plot / 2 + 40) << "\" y=\"10\">true-positive rate</text>\n";
  for (size_t r = 0; r < runs.size(); ++r) {
    std::vector<double> scores;
    std::vector<bool> nok;
    for (const auto& rec : runs[r].records) {
      scores.push_back(rec.result.error ? INFINITY : rec.result.score);
      nok.push_back(d.samples[rec.sample].nok);
    }
    h << "<polyline fill=\"none\" stroke=\"" << (r == 0 ? "#1f5fbf" : "#1f5fbf66") << "\" stroke-width=\"2\" points=\"";
    for (const auto& p : RocCurve(scores, nok)) h << pad + p.x * plot << "," << 10 + plot - p.y * plot << " ";
    h << "\"/>\n";
  }
  if (!runs.empty()) {  // the first run's operating point at the engine's threshold
    const Confusion& c = runs.front().metrics.confusion;
    const double fpr = c.fp + c.tn ? double(c.fp) / (c.fp + c.tn) : 0, tpr = c.tp + c.fn ? double(c.tp) / (c.tp + c.fn) : 0;
    const double x = pad + fpr * plot, y = 10 + plot - tpr * plot;
    h << "<circle class=\"operating-point\" cx=\"" << x << "\" cy=\"" << y << "\" r=\"5\" fill=\"#b00020\"><title>engine threshold "
      << Fmt(runs.front().threshold) << ": false-positive rate " << Fmt(fpr, 2) << ", true-positive rate " << Fmt(tpr, 2)
      << "</title></circle><text x=\"" << std::min(x + 8, double(pad + plot - 110)) << "\" y=\"" << std::max(y + 16, 24.0)
      << "\">engine threshold " << Fmt(runs.front().threshold) << "</text>\n";
  }
  h << "</svg><figcaption>ROC, image level" << (runs.size() > 1 ? ", one curve per seed" : "")
    << "; the red dot is where the engine's own threshold puts the first run</figcaption></figure>\n";
}

void LatencySvg(std::ostringstream& h, const nlohmann::json& s) {
  const auto& l = s["latency_ms"];
  const auto counts = l["histogram"]["counts"].get<std::vector<int>>();
  const auto edges = l["histogram"]["edges_ms"].get<std::vector<double>>();
  const int w = 460, hgt = 300, pad = 40, plot_w = w - pad - 10, plot_h = hgt - pad - 10;
  const int top = counts.empty() ? 1 : std::max(1, *std::max_element(counts.begin(), counts.end()));
  h << "<figure id=\"latency\" style=\"width:auto\"><svg width=\"" << w << "\" height=\"" << hgt << "\" viewBox=\"0 0 " << w
    << " " << hgt << "\">\n<line x1=\"" << pad << "\" y1=\"" << 10 + plot_h << "\" x2=\"" << pad + plot_w << "\" y2=\""
    << 10 + plot_h << "\" stroke=\"#999\"/>\n";
  const double lo = edges.empty() ? 0 : edges.front(), hi = edges.empty() ? 1 : edges.back();
  const double span = hi > lo ? hi - lo : 1;
  auto x_of = [&](double ms) { return pad + (ms - lo) / span * plot_w; };
  const double bar = counts.empty() ? 0 : double(plot_w) / counts.size();
  for (size_t i = 0; i < counts.size(); ++i) {
    double bh = double(counts[i]) / top * plot_h;
    h << "<rect x=\"" << pad + i * bar + 1 << "\" y=\"" << 10 + plot_h - bh << "\" width=\"" << std::max(1.0, bar - 2)
      << "\" height=\"" << bh << "\" fill=\"#7a9cc6\"><title>" << counts[i] << " images, " << Fmt(edges[i], 0) << "&ndash;"
      << Fmt(edges[i + 1], 0) << " ms</title></rect>\n";
  }
  for (const char* p : {"p50", "p90", "p99"}) {
    double x = x_of(l[p].get<double>());
    h << "<line x1=\"" << x << "\" y1=\"10\" x2=\"" << x << "\" y2=\"" << 10 + plot_h << "\" stroke=\"#b00020\" stroke-dasharray=\"3 3\"/>"
      << "<text x=\"" << x + 2 << "\" y=\"" << (std::string(p) == "p50" ? 20 : std::string(p) == "p90" ? 34 : 48) << "\">" << p
      << "</text>\n";
  }
  h << "<text x=\"" << pad << "\" y=\"" << hgt - 14 << "\">" << Fmt(lo, 0) << " ms</text><text x=\"" << pad + plot_w - 50
    << "\" y=\"" << hgt - 14 << "\">" << Fmt(hi, 0) << " ms</text><text x=\"4\" y=\"16\">" << top << "</text>\n"
    << "</svg><figcaption>Per-image latency (decode + inspect), all runs</figcaption></figure>\n";
}

void LatencyTable(std::ostringstream& h, const nlohmann::json& s) {
  const auto& l = s["latency_ms"];
  h << "<table><tr><th>latency</th><th>min</th><th>p50</th><th>p90</th><th>p99</th><th>max</th><th>throughput</th></tr>\n"
    << "<tr><td>ms per image</td><td>" << Fmt(l["min"], 0) << "</td><td>" << Fmt(l["p50"], 0) << "</td><td>"
    << Fmt(l["p90"], 0) << "</td><td>" << Fmt(l["p99"], 0) << "</td><td>" << Fmt(l["max"], 0) << "</td><td>"
    << Fmt(s["throughput_ips"], 2) << " images/s at " << s["jobs"].get<int>() << " job(s)</td></tr></table>\n";
  if (s.contains("usage")) {  // the model's token bill
    const auto& u = s["usage"]["per_image"];
    h << "<table id=\"usage\"><tr><th>tokens per image</th><th>input</th><th>output</th><th>cache read</th><th>requests</th></tr>\n"
      << "<tr><td>mean</td><td>" << Fmt(u.value("input_tokens", nlohmann::json()), 0) << "</td><td>"
      << Fmt(u.value("output_tokens", nlohmann::json()), 0) << "</td><td>" << Fmt(u.value("cache_read_input_tokens", nlohmann::json()), 0)
      << "</td><td>" << s["usage"]["requests"].get<int>() << "</td></tr></table>\n";
  }
}

// How wrong (misses, > 0) or how close (correct calls, < 0) a verdict was, on a log scale of
// score over threshold; errors are the worst misses.
double Badness(const Dataset& d, const Record& r) {
  if (r.result.error) return 1e9;
  const double ratio = r.result.threshold > 0 && r.result.score > 0 ? std::abs(std::log(r.result.score / r.result.threshold))
                                                                     : std::abs(r.result.score - r.result.threshold);
  return d.samples[r.sample].nok == r.predicted_nok() ? -ratio : ratio;
}

std::string OverlayDataUrl(const Dataset& d, const Record& r, const ReportOptions& o) {
  auto img = LoadImage(d.samples[r.sample].image, o.limits);
  if (!img.ok()) return {};
  cv::Mat heat;
  if (r.map_is_heatmap) heat = r.map;  // threshold units already
  cv::Mat out = DrawOverlay(img->bgr, heat, r.result, 2 * o.gallery_width);
  if (const auto& m = d.samples[r.sample].mask; !m.empty()) {  // ground truth outlined in yellow
    cv::Mat gt = cv::imread(m.string(), cv::IMREAD_GRAYSCALE);
    if (!gt.empty() && gt.cols * img->bgr.rows == gt.rows * img->bgr.cols) {
      if (gt.size() != out.size()) cv::resize(gt, gt, out.size(), 0, 0, cv::INTER_NEAREST);
      std::vector<std::vector<cv::Point>> contours;
      cv::findContours(gt > 0, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
      cv::drawContours(out, contours, -1, {0, 255, 255}, std::max(2, out.cols / 300));
    }
  }
  const double scale = double(o.gallery_width) / out.cols;
  cv::resize(out, out, {}, scale, scale, cv::INTER_AREA);
  std::vector<uint8_t> jpg;
  cv::imencode(".jpg", out, jpg, {cv::IMWRITE_JPEG_QUALITY, 80});
  return "data:image/jpeg;base64," + Base64Encode(jpg);
}

void Gallery(std::ostringstream& h, const Dataset& d, const Run& run, const ReportOptions& o) {
  std::vector<const Record*> order;
  for (const auto& r : run.records) order.push_back(&r);
  std::sort(order.begin(), order.end(), [&](const Record* a, const Record* b) { return Badness(d, *a) > Badness(d, *b); });
  order.resize(std::min(order.size(), o.gallery));
  h << "<h2 id=\"gallery\">Worst misses (seed " << run.seed << ")</h2>\n<p class=\"meta\">Heat map from blue (half the "
       "threshold) to red; boxes are the engine's defects; the yellow outline is the ground-truth defect. When there are "
       "fewer misses than places, the closest correct calls fill in.</p>\n<div class=\"gallery\">\n";
  for (const Record* r : order) {
    const Sample& s = d.samples[r->sample];
    const bool miss = s.nok != r->predicted_nok();
    std::string url = OverlayDataUrl(d, *r, o);
    h << "<figure>";
    if (!url.empty()) h << "<img alt=\"" << Escape(s.image.filename().string()) << "\" src=\"" << url << "\">";
    h << "<figcaption><b>" << (miss ? (s.nok ? "missed defect" : "false alarm") : "closest call") << "</b> &middot; "
      << Escape(s.type + "/" + s.image.filename().string()) << " &middot; expected " << (s.nok ? "NOK" : "OK")
      << ", judged <span class=\"" << (r->predicted_nok() ? "nok\">NOK" : "ok\">OK") << "</span>";
    if (r->result.error) h << " (error: " << Escape(*r->result.error) << ")";
    else h << " &middot; score " << Fmt(r->result.score) << " / threshold " << Fmt(r->result.threshold);
    h << "</figcaption></figure>\n";
  }
  h << "</div>\n";
}

// The question a report must answer first: can this setup be trusted on this product? In words,
// from the verdicts at the engine's own threshold, the ranking, and how much the draw of references
// matters.
void TrustVerdict(std::ostringstream& h, const nlohmann::json& s) {
  auto num = [&](const char* k) { return s[k].is_number() ? s[k].get<double>() : std::nan(""); };
  const double bal = num("balanced_accuracy"), spec = num("specificity"), rec = num("recall"), auroc = num("auroc");
  const size_t k = s["shots"].get<size_t>();
  const std::string refs = std::to_string(k) + (k == 1 ? " reference" : " references");
  auto pct = [](double v) { return Fmt(100 * v, 0) + "%"; };
  std::string cls, words;
  if (std::isnan(auroc)) {
    cls = "unknown", words = "Cannot tell: the test set needs both good and defective parts.";
  } else if (bal >= 0.9 && spec >= 0.9) {
    cls = "ok", words = "Trustworthy on these parts: at its own threshold the engine caught " + pct(rec) + " of the defects and passed " +
                        pct(spec) + " of the good parts, from " + refs + ".";
  } else if (auroc >= 0.9) {
    const auto& sc = s.value("scores", nlohmann::json::object());
    cls = "warn", words = "Usable once the threshold is set: the scores separate good from defective parts (AUROC " + Fmt(auroc, 2) +
                          "), but the engine's own threshold catches " + pct(rec) + " of the defects and passes " + pct(spec) +
                          " of the good parts." +
                          (sc.value("best_threshold", nlohmann::json()).is_number()
                               ? " The best threshold on these parts is " + Fmt(sc["best_threshold"]) + " (below)."
                               : std::string(" A threshold chosen on these parts does better (below)."));
  } else if (spec < 0.8) {
    cls = "nok", words = "Not yet: " + pct(1 - spec) + " of the good parts are rejected. The " + refs +
                         " miss how good parts look: add references like the false alarms below (zeroqc refs check).";
  } else {
    cls = "nok", words = "Not yet: defects and good parts overlap (AUROC " + Fmt(auroc, 2) + "); from " + refs +
                         " the engine does not separate them. Add references, or see the README on what the engine can see.";
  }
  if (s["seeds"].get<int>() > 1 && s["spread"]["auroc"].is_number() && s["spread"]["auroc"].get<double>() > 0.05)
    words += " The result depends on which references are drawn (AUROC sd " + Fmt(s["spread"]["auroc"], 2) + " over " +
             std::to_string(s["seeds"].get<int>()) + " draws): choose them to cover the product's variants (zeroqc refs suggest).";
  h << "<p id=\"verdict\" class=\"verdict " << cls << "\">" << Escape(words) << "</p>\n";
}

// The first run's references as thumbnails, the other runs' by name.
void ReferenceThumbnails(std::ostringstream& h, const std::vector<Run>& runs, const ReportOptions& o) {
  if (runs.empty() || runs.front().references.empty()) return;
  const auto& refs = runs.front().references;
  h << "<h2 id=\"references\">References drawn (seed " << runs.front().seed << ")</h2>\n<div class=\"thumbs\">\n";
  for (size_t i = 0; i < refs.size() && i < o.thumbnails; ++i) {
    auto img = LoadImage(refs[i], o.limits);
    std::string url;
    if (img.ok()) {
      cv::Mat t;
      const double f = 120.0 / std::max(img->bgr.cols, img->bgr.rows);
      cv::resize(img->bgr, t, {}, f, f, cv::INTER_AREA);
      std::vector<uint8_t> jpg;
      cv::imencode(".jpg", t, jpg, {cv::IMWRITE_JPEG_QUALITY, 80});
      url = "data:image/jpeg;base64," + Base64Encode(jpg);
    }
    h << "<figure class=\"thumb\">" << (url.empty() ? "" : "<img alt=\"" + Escape(refs[i].filename().string()) + "\" src=\"" + url + "\">")
      << "<figcaption>" << Escape(refs[i].filename().string()) << "</figcaption></figure>\n";
  }
  if (refs.size() > o.thumbnails) h << "<p class=\"meta\">and " << refs.size() - o.thumbnails << " more</p>\n";
  h << "</div>\n";
  if (runs.size() > 1) h << "<p class=\"meta\">Each seed draws its own references: see Runs below.</p>\n";
}

void RunsTable(std::ostringstream& h, const nlohmann::json& s) {
  h << "<h2 id=\"runs\">Runs</h2>\n<table>\n<tr><th>seed</th><th>references</th><th>threshold</th><th>best threshold</th><th>accuracy</th>"
       "<th>AUROC</th><th>errors</th><th>setup ms</th><th>images/s</th></tr>\n";
  for (const auto& r : s["runs"]) {
    std::string refs;
    for (const auto& n : r["references"]) refs += (refs.empty() ? "" : " ") + n.get<std::string>();
    const size_t n = r["references"].size();
    h << "<tr><td>" << r["seed"].get<uint64_t>() << "</td><td>" << (n <= 16 ? Escape(refs) : std::to_string(n) + " (metrics.json lists them)")
      << "</td><td>" << Fmt(r["threshold"]) << "</td><td>" << Fmt(r.value("best_threshold", nlohmann::json())) << "</td><td>" << Fmt(r["accuracy"]) << "</td><td>" << Fmt(r["auroc"])
      << "</td><td>" << r["errors"].get<int>() << "</td><td>" << Fmt(r["setup_ms"], 0) << "</td><td>"
      << Fmt(r["throughput_ips"], 2) << "</td></tr>\n";
  }
  h << "</table>\n";
}

}  // namespace

const char* ReportStyle() { return kStyle; }

std::string ScoreHistogramSvg(const nlohmann::json& scores, const std::string& caption) {
  const auto good = scores.value("good", std::vector<double>{}), nok = scores.value("nok", std::vector<double>{});
  const double t = scores.value("threshold", 0.0);
  double lo = t, hi = t;
  for (const auto* v : {&good, &nok})
    for (double x : *v) lo = std::min(lo, x), hi = std::max(hi, x);
  if (!(hi > lo)) hi = lo + 1;
  constexpr int kBins = 30;
  const double width = (hi - lo) / kBins;
  std::vector<int> hg(kBins, 0), hn(kBins, 0);
  auto bin = [&](double x) { return std::clamp(int((x - lo) / width), 0, kBins - 1); };
  for (double x : good) ++hg[bin(x)];
  for (double x : nok) ++hn[bin(x)];
  int top = 1;
  for (int i = 0; i < kBins; ++i) top = std::max({top, hg[i], hn[i]});
  const int w = 480, hgt = 240, pad = 44, plot_w = w - pad - 16, plot_h = hgt - 70;
  auto x_of = [&](double v) { return pad + (v - lo) / (hi - lo) * plot_w; };
  std::ostringstream h;
  h << "<figure class=\"scores\" style=\"width:auto\"><svg width=\"" << w << "\" height=\"" << hgt << "\" viewBox=\"0 0 " << w
    << " " << hgt << "\">\n<line x1=\"" << pad << "\" y1=\"" << 10 + plot_h << "\" x2=\"" << pad + plot_w << "\" y2=\""
    << 10 + plot_h << "\" stroke=\"#999\"/><line x1=\"" << pad << "\" y1=\"10\" x2=\"" << pad << "\" y2=\"" << 10 + plot_h
    << "\" stroke=\"#999\"/>\n";
  // Axes: parts per bin up the side, the image score along the bottom.
  for (int v : {0, top / 2, top}) {
    if (v == top / 2 && (v == 0 || v == top)) continue;
    const double y = 10 + plot_h - double(v) / top * plot_h;
    h << "<line x1=\"" << pad - 4 << "\" y1=\"" << y << "\" x2=\"" << pad << "\" y2=\"" << y << "\" stroke=\"#999\"/><text class=\"y-tick\" x=\""
      << pad - 8 - 7 * int(std::to_string(v).size()) << "\" y=\"" << y + 4 << "\">" << v << "</text>\n";
  }
  h << "<text transform=\"rotate(-90)\" x=\"" << -(10 + plot_h / 2 + 14) << "\" y=\"12\">parts</text>\n";
  for (int i = 0; i <= 4; ++i) {
    const double v = lo + (hi - lo) * i / 4, x = x_of(v);
    h << "<line x1=\"" << x << "\" y1=\"" << 10 + plot_h << "\" x2=\"" << x << "\" y2=\"" << 14 + plot_h
      << "\" stroke=\"#999\"/><text class=\"x-tick\" x=\"" << x - 14 << "\" y=\"" << 26 + plot_h << "\">" << Fmt(v) << "</text>\n";
  }
  h << "<text x=\"" << pad + plot_w / 2 - 30 << "\" y=\"" << 42 + plot_h << "\">image score</text>\n";
  const double bar = double(plot_w) / kBins;
  for (int i = 0; i < kBins; ++i)
    for (auto [count, colour, title] : {std::tuple{hg[i], "#2e9e4d88", "good"}, {hn[i], "#c62f3e88", "defective"}}) {
      if (!count) continue;
      const double bh = double(count) / top * plot_h;
      h << "<rect x=\"" << pad + i * bar << "\" y=\"" << 10 + plot_h - bh << "\" width=\"" << bar << "\" height=\"" << bh
        << "\" fill=\"" << colour << "\"><title>" << count << " " << title << ", score " << Fmt(lo + i * width) << "&ndash;"
        << Fmt(lo + (i + 1) * width) << "</title></rect>\n";
    }
  const double tx = x_of(t);
  h << "<line class=\"threshold\" x1=\"" << tx << "\" y1=\"6\" x2=\"" << tx << "\" y2=\"" << 10 + plot_h
    << "\" stroke=\"#222\" stroke-width=\"2\" stroke-dasharray=\"5 3\"/><text x=\"" << tx + 3 << "\" y=\"16\">threshold "
    << Fmt(t) << "</text>\n<text x=\"" << pad << "\" y=\"" << hgt - 6
    << "\"><tspan fill=\"#2e9e4d\">&#9632; good (" << good.size() << ")</tspan> <tspan fill=\"#c62f3e\">&#9632; defective ("
    << nok.size() << ")</tspan></text>\n</svg><figcaption>" << Escape(caption) << "</figcaption></figure>\n";
  return h.str();
}

std::string ReportHtml(const nlohmann::json& s, const Dataset& d, const std::vector<Run>& runs, const ReportOptions& o) {
  std::ostringstream h;
  const std::string name = d.root.filename().empty() ? d.root.parent_path().filename().string() : d.root.filename().string();
  char date[32];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M", std::localtime(&now));
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>zeroqc bench: " << Escape(name)
    << "</title>\n<style>" << kStyle << "</style></head><body>\n<h1>zeroqc bench: " << Escape(name) << "</h1>\n<p class=\"meta\">engine <b>"
    << Escape(s["engine"].get<std::string>()) << "</b> &middot; " << s["shots"].get<size_t>() << " of " << s["pool"].get<size_t>()
    << " references per run &middot; " << s["seeds"].get<int>() << " seed(s) &middot; " << s["images"].get<size_t>()
    << " QC images (" << s["nok_images"].get<size_t>() << " defective) &middot; " << s["jobs"].get<int>() << " job(s) &middot; "
    << date << "<br>" << Escape(d.root.string()) << "</p>\n";
  TrustVerdict(h, s);
  ReferenceThumbnails(h, runs, o);
  MetricTable(h, s);
  CalibrationNote(h, s);
  PerTypeTable(h, s);
  h << "<h2>ROC and latency</h2>\n<div class=\"charts\">\n";
  RocSvg(h, d, runs);
  LatencySvg(h, s);
  h << "</div>\n";
  LatencyTable(h, s);
  if (!runs.empty()) Gallery(h, d, runs.front(), o);
  RunsTable(h, s);
  h << "</body></html>\n";
  return h.str();
}

}  // namespace zeroqc
