// A bench over several datasets at once: one summary per set (Summarize) and a suite table of
// the quality metrics per set and their mean and spread over the sets.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace zeroqc {

struct SuiteEntry {
  std::string name;        // the dataset folder's name
  nlohmann::json summary;  // Summarize's output for that set
};

// The metrics of the suite table, in table order.
const std::vector<std::string>& SuiteMetrics();

// {"engine", "shots", "seeds", "sets": [{"name", "shots", "<metric>": mean over seeds,
//  "spread": {"<metric>": sd over seeds}}], "mean": {"<metric>": mean over sets},
//  "spread": {"<metric>": sd over sets}}. Undefined values (e.g. no masks) are null and left out
// of the mean.
nlohmann::json SummarizeSuite(const std::vector<SuiteEntry>& sets);

// The suite table as Markdown (for the terminal and docs/BENCHMARKS.md): a row per set with
// "mean ± sd over seeds", then the mean row with "mean ± sd over sets".
std::string SuiteMarkdown(const nlohmann::json& suite);

// report.html of a suite: the table, and per set a histogram of good and defective scores with the
// threshold line; each set's own report is linked (`<name>/report.html`).
std::string SuiteReportHtml(const nlohmann::json& suite, const std::vector<SuiteEntry>& sets);

}  // namespace zeroqc
