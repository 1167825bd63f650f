// report.html: one self-contained page (inline CSS, SVG charts, JPEG data URLs, no scripts or
// external requests) with the metric table, confusion matrix, per-type table, ROC curve, latency
// histogram, a gallery of the worst misses and the runs.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "bench/runner.h"

namespace zeroqc {

struct ReportOptions {
  size_t gallery = 8;        // overlays shown; closest calls fill in when there are fewer misses
  int gallery_width = 360;   // pixels per overlay
  size_t thumbnails = 16;    // references shown as thumbnails
  ImageLimits limits;
};

// `summary` is Summarize's output for the same runs; the gallery uses the first run (its maps).
std::string ReportHtml(const nlohmann::json& summary, const Dataset& dataset, const std::vector<Run>& runs,
                       const ReportOptions& options = {});

// An SVG histogram of good (green) and defective (red) image scores with the threshold as a
// line, from a summary's "scores" object: what a QC engineer looks at to trust a threshold.
std::string ScoreHistogramSvg(const nlohmann::json& scores, const std::string& caption);

// Escapes text for HTML element content and attribute values.
std::string HtmlEscape(const std::string& s);

// The page's shared stylesheet.
const char* ReportStyle();

}  // namespace zeroqc
