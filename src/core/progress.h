// Progress of a long step (a memory bank's build, a batch's scoring): engines report it, the CLI
// prints it and the service logs it.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace zeroqc {

struct ProgressEvent {
  std::string stage;  // what is being done, e.g. "describing references"
  size_t done = 0, total = 0;  // a stage starts with done = 0 and ends with done = total
};

using ProgressFn = std::function<void(const ProgressEvent&)>;

// Calls `fn` if it is set.
inline void Report(const ProgressFn& fn, const std::string& stage, size_t done, size_t total) {
  if (fn) fn({stage, done, total});
}

}  // namespace zeroqc
