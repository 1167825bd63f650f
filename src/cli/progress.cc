#include "cli/progress.h"

#include <unistd.h>

#include <memory>

namespace zeroqc::cli {

void ProgressPrinter::operator()(const ProgressEvent& e) {
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (e.stage != stage_ || e.done == 0) {
    stage_ = e.stage;
    start_ = last_line_ = now;
  }
  const double s = std::chrono::duration<double>(now - start_).count();
  const bool end = e.done >= e.total;
  char eta[48] = "";
  if (e.done > 0 && !end && s > 0) std::snprintf(eta, sizeof eta, ", ETA %.0f s", s / e.done * (e.total - e.done));
  if (terminal_) {
    std::fprintf(out_, "\r\033[K%s: %zu/%zu%s", e.stage.c_str(), e.done, e.total, eta);
    if (end) std::fprintf(out_, " (%.1f s)\n", s);
    std::fflush(out_);
    return;
  }
  if (e.done == 0 && !end) {
    std::fprintf(out_, "%s: 0/%zu\n", e.stage.c_str(), e.total);
  } else if (end) {
    std::fprintf(out_, "%s: %zu/%zu done in %.1f s\n", e.stage.c_str(), e.done, e.total, s);
  } else if (std::chrono::duration<double>(now - last_line_).count() >= 2.0) {
    std::fprintf(out_, "%s: %zu/%zu%s\n", e.stage.c_str(), e.done, e.total, eta);
  } else {
    return;
  }
  last_line_ = now;
  std::fflush(out_);
}

ProgressFn StderrProgress(bool quiet) {
  if (quiet) return {};
  auto p = std::make_shared<ProgressPrinter>(stderr, isatty(STDERR_FILENO) == 1);
  return [p](const ProgressEvent& e) { (*p)(e); };
}

}  // namespace zeroqc::cli
