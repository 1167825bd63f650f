#include "core/json_limits.h"

#include <algorithm>

namespace zeroqc {

int JsonDepth(std::string_view text, int stop_at) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > stop_at) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

Status CheckJsonBounds(std::string_view text, const JsonLimits& limits, std::string_view what) {
  const std::string name(what);
  if (text.size() > limits.max_bytes)
    return Status(Code::kTooLarge,
                  name + " is " + std::to_string(text.size()) + " bytes; at most " + std::to_string(limits.max_bytes) + " are accepted");
  if (JsonDepth(text, limits.max_depth) > limits.max_depth)
    return InvalidArgument(name + " nests deeper than " + std::to_string(limits.max_depth) + " levels");
  return Status::Ok();
}

StatusOr<nlohmann::json> ParseBoundedJson(std::string_view text, const JsonLimits& limits, std::string_view what) {
  if (auto s = CheckJsonBounds(text, limits, what); !s.ok()) return s;
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return InvalidArgument(std::string(what) + " is not valid JSON");
  return j;
}

}  // namespace zeroqc
