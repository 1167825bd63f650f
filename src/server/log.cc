#include "server/log.h"

#include <chrono>
#include <ctime>
#include <mutex>

#include "core/warn.h"

namespace zeroqc::log {
namespace {

std::mutex mu;
Format format = Format::kText;
std::FILE* out = stderr;

// UTC with milliseconds, RFC 3339 (what log stacks parse without configuration).
std::string Now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const int ms = int(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm;
  gmtime_r(&t, &tm);
  char buf[64];  // room for any int the format may see (compiler check)
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

}  // namespace

void Configure(Format f, std::FILE* o) {
  {
    std::lock_guard lock(mu);
    format = f;
    out = o;
  }
  SetWarningSink([](const std::string& event, const std::string& m) { Warn(event.c_str(), m); });
}

void Write(const char* level, const char* event, const std::string& message, const nlohmann::json& fields) {
  std::string line;
  std::lock_guard lock(mu);
  if (format == Format::kJson) {
    nlohmann::json j = {{"time", Now()}, {"level", level}, {"event", event}, {"message", message}};
    if (fields.is_object())
      for (const auto& [k, v] : fields.items()) j.emplace(k, v);  // the four keys above win
    // Replace, not throw, on invalid UTF-8 (a client's file name): a log line must never be lost.
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = "zeroqc serve: " + std::string(std::string_view(level) == "info" ? "" : std::string(level) + ": ") + message;
  }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), out);
  std::fflush(out);
}

}  // namespace zeroqc::log
