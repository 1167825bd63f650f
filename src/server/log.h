// The service's log on stderr, one line per event: readable text (the default) or one JSON object
// per line for a log stack (`zeroqc serve --log-format json`):
//   {"time":"2026-11-30T02:10:00.123Z","level":"info","event":"inspection_finished",
//    "message":"...","inspection":"ins_...","product":"sponge","duration_ms":251.2, ...}
// Thread-safe: lines never interleave.
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace zeroqc::log {

enum class Format { kText, kJson };

// Process-wide; set once at start. `out` is stderr unless a test captures the lines.
void Configure(Format format, std::FILE* out = stderr);

// `level`: "info", "warn" or "error". `event`: a stable snake_case name; `fields`: an object of
// extra keys (inspection, product, duration_ms, ...) that JSON lines carry and text lines omit.
void Write(const char* level, const char* event, const std::string& message, const nlohmann::json& fields = nullptr);
inline void Info(const char* event, const std::string& m, const nlohmann::json& f = nullptr) { Write("info", event, m, f); }
inline void Warn(const char* event, const std::string& m, const nlohmann::json& f = nullptr) { Write("warn", event, m, f); }
inline void Error(const char* event, const std::string& m, const nlohmann::json& f = nullptr) { Write("error", event, m, f); }

}  // namespace zeroqc::log
