// Warnings from deep inside the library (e.g. a backbone that falls back to another runtime), for
// whoever runs it to show: stderr by default, the service's log when it runs.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <utility>

namespace zeroqc {

using WarningSink = std::function<void(const std::string& event, const std::string& message)>;

inline WarningSink& WarningSinkSlot() {
  static WarningSink sink = [](const std::string&, const std::string& m) { std::fprintf(stderr, "zeroqc: %s\n", m.c_str()); };
  return sink;
}

// Set once at start, before any thread may warn.
inline void SetWarningSink(WarningSink sink) { WarningSinkSlot() = std::move(sink); }
inline void Warn(const std::string& event, const std::string& message) { WarningSinkSlot()(event, message); }

}  // namespace zeroqc
