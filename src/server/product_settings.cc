#include "server/product_settings.h"

#include <cmath>
#include <functional>
#include <map>
#include <set>

namespace zeroqc {
namespace {

using json = nlohmann::json;

struct Rule {
  std::set<std::string> engines;  // the engines it applies to
  std::function<bool(const json&)> ok;
  const char* expect;  // what it may be, for the message
};

bool Number(const json& v, double lo, double hi, bool open_low = false) {
  if (!v.is_number()) return false;
  const double x = v.get<double>();
  return std::isfinite(x) && (open_low ? x > lo : x >= lo) && x <= hi;
}
bool Integer(const json& v, int64_t lo, int64_t hi) {
  return v.is_number_integer() && v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
}
bool OneOf(const json& v, std::set<std::string> choices) { return v.is_string() && choices.count(v.get<std::string>()); }
bool Text(const json& v) { return v.is_string() && !v.get<std::string>().empty() && v.get<std::string>().size() <= 256; }

const std::set<std::string> kPatch{"patch", "cascade"}, kModel{"vlm", "cascade"}, kAll{"patch", "vlm", "cascade"};

const std::map<std::string, Rule>& Rules() {
  static const std::map<std::string, Rule> rules = {
      // A threshold below 1e-6 (5e-324, say) turns every part NOK; above 1e6 nothing is.
      {"threshold", {kPatch, [](const json& v) { return Number(v, 1e-6, 1e6); }, "a number from 1e-6 to 1e6"}},
      {"threshold_sigmas", {kPatch, [](const json& v) { return Number(v, 0, 20); }, "a number from 0 to 20"}},
      {"low", {{"cascade"}, [](const json& v) { return Number(v, 0, 100, true); }, "a number above 0, at most 100 (threshold units)"}},
      {"high", {{"cascade"}, [](const json& v) { return Number(v, 0, 100, true); }, "a number above 0, at most 100 (threshold units)"}},
      {"explain", {{"cascade"}, [](const json& v) { return OneOf(v, {"nok", "uncertain"}); }, "\"nok\" or \"uncertain\""}},
      {"model_references", {kModel, [](const json& v) { return Integer(v, 1, 64); }, "an integer from 1 to 64"}},
      {"provider", {kModel, [](const json& v) { return OneOf(v, {"bedrock", "openai", "ollama"}); }, "bedrock, openai or ollama"}},
      {"box_format", {kModel, [](const json& v) { return OneOf(v, {"norm1000", "norm1000-yx", "pixels"}); }, "norm1000, norm1000-yx or pixels"}},
      {"model", {kModel, Text, "a model id (1-256 characters)"}},
      {"region", {kModel, Text, "an AWS region (1-256 characters)"}},
      {"profile", {kModel, Text, "a prompt profile name (1-256 characters)"}},
      // Who may make a reviewed part a reference: a reference moves the threshold for every later part.
      {"reviews_add_references", {kAll, [](const json& v) { return OneOf(v, {"admin", "write"}); }, "\"admin\" (the default) or \"write\""}},
      // Only a web endpoint: a file:// URL made every error quote a server file to any reader.
      {"base_url",
       {kModel,
        [](const json& v) {
          if (!Text(v)) return false;
          const std::string u = v.get<std::string>();
          return u.rfind("http://", 0) == 0 || u.rfind("https://", 0) == 0;
        },
        "an http:// or https:// URL"}},
  };
  return rules;
}

const std::set<std::string> kChecked = {"line_window", "foreground", "rotations", "backbone", "naming", "auto_references", "mqtt"};

}  // namespace

Status CheckProductSettings(const std::string& engine, const nlohmann::json& settings) {
  if (!settings.is_object()) return InvalidArgument("settings must be an object");
  for (const auto& [key, value] : settings.items()) {
    if (kChecked.count(key)) continue;
    auto rule = Rules().find(key);
    if (rule == Rules().end()) {
      std::string known;
      for (const auto& [k, r] : Rules()) known += (known.empty() ? "" : ", ") + k;
      for (const auto& k : kChecked) known += ", " + k;
      return InvalidArgument("settings." + key + " is not a setting (settings: " + known + ")");
    }
    if (!rule->second.engines.count(engine))
      return InvalidArgument("settings." + key + " does not apply to the " + engine + " engine");
    if (!rule->second.ok(value)) return InvalidArgument("settings." + key + ": " + rule->second.expect);
  }
  if (settings.contains("low") && settings.contains("high") && settings["low"].get<double>() >= settings["high"].get<double>())
    return InvalidArgument("settings.low must be below settings.high");
  return Status::Ok();
}

}  // namespace zeroqc
