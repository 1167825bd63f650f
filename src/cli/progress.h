// Progress on stderr for the CLI. On a terminal, one line rewritten in place with the count, the
// rate and an ETA; otherwise (logs, CI, pipes) plain lines: a stage's start, a line at most every
// 2 s while it runs, and its end with its duration.
#pragma once

#include <chrono>
#include <cstdio>
#include <mutex>

#include "core/progress.h"

namespace zeroqc::cli {

class ProgressPrinter {
 public:
  ProgressPrinter(std::FILE* out, bool terminal) : out_(out), terminal_(terminal) {}
  void operator()(const ProgressEvent& e);  // thread-safe

 private:
  std::FILE* out_;
  bool terminal_;
  std::mutex mu_;
  std::string stage_;
  std::chrono::steady_clock::time_point start_, last_line_;
};

// A ProgressFn that prints on stderr (plain lines unless stderr is a terminal); empty when quiet.
ProgressFn StderrProgress(bool quiet);

}  // namespace zeroqc::cli
