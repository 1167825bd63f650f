// JSON from untrusted clients: a size and nesting-depth limit checked before parsing, so that a
// body like [[[[...]]]] nested 100000 deep cannot exhaust the stack of the parser or of the
// destructor of the value it builds.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace zeroqc {

struct JsonLimits {
  size_t max_bytes = 64 * 1024;
  int max_depth = 32;  // nested arrays and objects
};

// kInvalidArgument for text that is not JSON or nests too deep, kTooLarge for text over
// max_bytes; the message says which limit and what it is.
StatusOr<nlohmann::json> ParseBoundedJson(std::string_view text, const JsonLimits& limits, std::string_view what);

// The size and depth checks of ParseBoundedJson alone, for text already known to be JSON (e.g. a
// parsed value's dump()).
Status CheckJsonBounds(std::string_view text, const JsonLimits& limits, std::string_view what);

// The depth of nesting of `text` (0 for a scalar), scanning brackets outside strings; stops
// counting past `stop_at`.
int JsonDepth(std::string_view text, int stop_at);

}  // namespace zeroqc
