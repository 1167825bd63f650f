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
  if (j.ok() && j->is_object() && j->contains("settings")) (void)j->value("threshold", 0.0);
  return 0;
}
