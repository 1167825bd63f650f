// Any bytes as a client's JSON (upload fields, metadata, product settings): the bounded parser
// refuses or parses, never overflows the stack, and never returns a value deeper than its limit.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/json_limits.h"

namespace {
int Depth(const nlohmann::json& j) {
  int d = 0;
  if (j.is_structured())
    for (const auto& v : j) d = std::max(d, Depth(v));
  return j.is_structured() ? d + 1 : 0;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  constexpr zeroqc::JsonLimits kLimits{16 * 1024, 16};
  auto j = zeroqc::ParseBoundedJson(text, kLimits, "fuzz input");
  if (j.ok() && Depth(*j) > kLimits.max_depth) std::abort();
  // Typed reads of a client's settings: a value of the wrong type is a json exception, which the
  // service's readers turn into a 400 (ReadThresholdSettings, the product engine factory's catch);
  // it must be that exception, never a crash.
  if (j.ok() && j->is_object() && j->contains("settings")) {
    try {
      (void)j->value("threshold", 0.0);
    } catch (const nlohmann::json::type_error&) {
    }
  }
  return 0;
}
