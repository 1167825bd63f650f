#include "bench/suite.h"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <sstream>

#include "bench/report.h"

namespace zeroqc {
namespace {

nlohmann::json Number(double d) { return std::isfinite(d) ? nlohmann::json(d) : nlohmann::json(nullptr); }

std::string PlusMinus(const nlohmann::json& mean, const nlohmann::json& sd, bool with_sd) {
  if (!mean.is_number()) return "–";
  char b[64];
  if (with_sd && sd.is_number()) std::snprintf(b, sizeof b, "%.3f ± %.3f", mean.get<double>(), sd.get<double>());
  else std::snprintf(b, sizeof b, "%.3f", mean.get<double>());
  return b;
}

const char* Label(const std::string& key) {
  if (key == "auroc") return "image AUROC";
  if (key == "balanced_accuracy") return "balanced acc.";
  if (key == "f1") return "F1";
  if (key == "pixel_auroc") return "pixel AUROC";
  if (key == "pro") return "PRO";
  if (key == "calibration_gap") return "calibration gap";
  return key.c_str();
}

}  // namespace

const std::vector<std::string>& SuiteMetrics() {
  static const std::vector<std::string> m = {"auroc", "balanced_accuracy", "f1", "recall", "specificity",
                                             "pixel_auroc", "pro", "calibration_gap"};
  return m;
}

nlohmann::json SummarizeSuite(const std::vector<SuiteEntry>& sets) {
  nlohmann::json j;
  j["sets"] = nlohmann::json::array();
  if (!sets.empty()) {
    j["engine"] = sets.front().summary.value("engine", "");
    j["seeds"] = sets.front().summary.value("seeds", 1);
    j["shots"] = sets.front().summary.value("shots_requested", sets.front().summary["shots"]);
  }
  for (const auto& e : sets) {
    nlohmann::json row = {{"name", e.name}, {"shots", e.summary["shots"]}, {"pool", e.summary["pool"]},
                          {"images", e.summary["images"]}};
    for (const auto& k : SuiteMetrics()) {
      row[k] = e.summary.value(k, nlohmann::json());
      row["spread"][k] = e.summary["spread"].value(k, nlohmann::json());
    }
    j["sets"].push_back(row);
  }
  for (const auto& k : SuiteMetrics()) {
    std::vector<double> v;
    for (const auto& row : j["sets"])
      if (row[k].is_number()) v.push_back(row[k].get<double>());
    double mean = std::nan(""), sd = std::nan("");
    if (!v.empty()) {
      mean = 0;
      for (double x : v) mean += x;
      mean /= v.size();
      double ss = 0;
      for (double x : v) ss += (x - mean) * (x - mean);
      sd = v.size() > 1 ? std::sqrt(ss / (v.size() - 1)) : 0.0;
    }
    j["mean"][k] = Number(mean);
    j["spread"][k] = Number(sd);
  }
  return j;
}

std::string SuiteMarkdown(const nlohmann::json& s) {
  std::ostringstream o;
  const bool seeds = s.value("seeds", 1) > 1;
  o << "| set | refs |";
  for (const auto& k : SuiteMetrics()) o << " " << Label(k) << " |";
  o << "\n|---|---|";
  for (size_t i = 0; i < SuiteMetrics().size(); ++i) o << "---|";
  o << "\n";
  for (const auto& row : s["sets"]) {
    o << "| " << row["name"].get<std::string>() << " | " << row["shots"].dump() << " |";
    for (const auto& k : SuiteMetrics()) o << " " << PlusMinus(row[k], row["spread"][k], seeds) << " |";
    o << "\n";
  }
  o << "| **mean of " << s["sets"].size() << " sets** | |";
  for (const auto& k : SuiteMetrics()) o << " **" << PlusMinus(s["mean"][k], s["spread"][k], true) << "** |";
  o << "\n";
  return o.str();
}

std::string SuiteReportHtml(const nlohmann::json& s, const std::vector<SuiteEntry>& sets) {
  std::ostringstream h;
  char date[32];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M", std::localtime(&now));
  const bool seeds = s.value("seeds", 1) > 1;
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>zeroqc bench: suite of " << sets.size()
    << " sets</title>\n<style>" << ReportStyle() << "</style></head><body>\n<h1>zeroqc bench: suite of " << sets.size()
    << " sets</h1>\n<p class=\"meta\">engine <b>" << HtmlEscape(s.value("engine", "")) << "</b> &middot; references per run: "
    << HtmlEscape(s["shots"].dump()) << " &middot; " << s.value("seeds", 1) << " seed(s) &middot; " << date << "</p>\n"
    << "<h2 id=\"suite\">Suite table</h2>\n<p class=\"meta\">Per set: mean" << (seeds ? " &plusmn; sd over seeds" : "")
    << "; last row: mean &plusmn; sd over sets. Verdicts at the engine's own threshold. The calibration gap is the best "
       "balanced accuracy any threshold reaches minus the one at the engine's own threshold.</p>\n<table id=\"suite-table\">\n<tr><th>set</th><th>refs</th>";
  for (const auto& k : SuiteMetrics()) h << "<th>" << Label(k) << "</th>";
  h << "</tr>\n";
  for (const auto& row : s["sets"]) {
    const std::string name = row["name"].get<std::string>();
    h << "<tr><td><a href=\"" << HtmlEscape(name) << "/report.html\">" << HtmlEscape(name) << "</a></td><td>"
      << HtmlEscape(row["shots"].dump()) << "</td>";
    for (const auto& k : SuiteMetrics()) h << "<td>" << HtmlEscape(PlusMinus(row[k], row["spread"][k], seeds)) << "</td>";
    h << "</tr>\n";
  }
  h << "<tr><th>mean of " << s["sets"].size() << " sets</th><th></th>";
  for (const auto& k : SuiteMetrics()) h << "<th>" << HtmlEscape(PlusMinus(s["mean"][k], s["spread"][k], true)) << "</th>";
  h << "</tr>\n</table>\n<h2 id=\"histograms\">Scores of good and defective parts against the threshold</h2>\n<div class=\"charts\">\n";
  for (const auto& e : sets)
    if (e.summary.contains("scores"))
      h << ScoreHistogramSvg(e.summary["scores"], e.name + " (seed " + std::to_string(e.summary["scores"]["seed"].get<uint64_t>()) +
                                                      ", calibration gap " + PlusMinus(e.summary["calibration_gap"], nullptr, false) + ")");
  h << "</div>\n</body></html>\n";
  return h.str();
}

}  // namespace zeroqc
