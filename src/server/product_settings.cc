#include "server/product_settings.h"

#include <cmath>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <vector>
#include <algorithm>

namespace zeroqc {
namespace {

using json = nlohmann::json;

// A setting: the engines it applies to and its JSON Schema, which is both what the check below
// enforces and what web/openapi.json describes (a test holds the two equal).
struct Rule {
  std::set<std::string> engines;
  json schema;
  const char* expect;  // what it may be, for the message
};

const std::set<std::string> kPatch{"patch", "cascade"}, kModel{"vlm", "cascade"}, kAll{"patch", "vlm", "cascade"};

// The JSON Schema words the rules use: type (number, integer, string), minimum, maximum,
// exclusiveMinimum, enum, minLength, maxLength, pattern. Numbers must be finite.
bool Valid(const json& schema, const json& v) {
  const std::string type = schema.value("type", "");
  if (type == "number" || type == "integer") {
    if (type == "integer" ? !v.is_number_integer() : !v.is_number()) return false;
    const double x = v.get<double>();
    if (!std::isfinite(x)) return false;
    if (schema.contains("minimum") && x < schema["minimum"].get<double>()) return false;
    if (schema.contains("exclusiveMinimum") && x <= schema["exclusiveMinimum"].get<double>()) return false;
    if (schema.contains("maximum") && x > schema["maximum"].get<double>()) return false;
  } else if (type == "string") {
    if (!v.is_string()) return false;
    const std::string& t = v.get_ref<const std::string&>();
    if (schema.contains("minLength") && t.size() < schema["minLength"].get<size_t>()) return false;
    if (schema.contains("maxLength") && t.size() > schema["maxLength"].get<size_t>()) return false;
    if (schema.contains("pattern") && !std::regex_search(t, std::regex(schema["pattern"].get<std::string>()))) return false;
  } else {
    return false;
  }
  if (schema.contains("enum") && std::find(schema["enum"].begin(), schema["enum"].end(), v) == schema["enum"].end()) return false;
  return true;
}

const std::map<std::string, Rule>& Rules() {
  auto number = [](double lo, double hi) { return json{{"type", "number"}, {"minimum", lo}, {"maximum", hi}}; };
  auto above = [](double lo, double hi) { return json{{"type", "number"}, {"exclusiveMinimum", lo}, {"maximum", hi}}; };
  auto choice = [](std::vector<std::string> c) { return json{{"type", "string"}, {"enum", c}}; };
  const json text = {{"type", "string"}, {"minLength", 1}, {"maxLength", 256}};
  static const std::map<std::string, Rule> rules = {
      // A threshold below 1e-6 (5e-324, say) turns every part NOK; above 1e6 nothing is.
      {"threshold", {kPatch, number(1e-6, 1e6), "a number from 1e-6 to 1e6"}},
      {"threshold_sigmas", {kPatch, number(0, 20), "a number from 0 to 20"}},
      {"low", {{"cascade"}, above(0, 100), "a number above 0, at most 100 (threshold units)"}},
      {"high", {{"cascade"}, above(0, 100), "a number above 0, at most 100 (threshold units)"}},
      {"explain", {{"cascade"}, choice({"nok", "uncertain"}), "\"nok\" or \"uncertain\""}},
      {"model_references", {kModel, {{"type", "integer"}, {"minimum", 1}, {"maximum", 64}}, "an integer from 1 to 64"}},
      {"provider", {kModel, choice({"bedrock", "openai", "ollama"}), "bedrock, openai or ollama"}},
      {"box_format", {kModel, choice({"norm1000", "norm1000-yx", "pixels"}), "norm1000, norm1000-yx or pixels"}},
      {"model", {kModel, text, "a model id (1-256 characters)"}},
      {"region", {kModel, text, "an AWS region (1-256 characters)"}},
      {"profile", {kModel, text, "a prompt profile name (1-256 characters)"}},
      // Who may make a reviewed part a reference: a reference moves the threshold for every later part.
      {"reviews_add_references", {kAll, choice({"admin", "write"}), "\"admin\" (the default) or \"write\""}},
      // Only a web endpoint: a file:// URL made every error quote a server file to any reader.
      {"base_url", {kModel, {{"type", "string"}, {"minLength", 1}, {"maxLength", 256}, {"pattern", "^https?://"}}, "an http:// or https:// URL"}},
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
    if (!Valid(rule->second.schema, value)) return InvalidArgument("settings." + key + ": " + rule->second.expect);
  }
  if (settings.contains("low") && settings.contains("high") && settings["low"].get<double>() >= settings["high"].get<double>())
    return InvalidArgument("settings.low must be below settings.high");
  return Status::Ok();
}

nlohmann::json ProductSettingRules() {
  json out = json::object();
  for (const auto& [key, rule] : Rules()) {
    json s = rule.schema;
    s["x-engines"] = std::vector<std::string>(rule.engines.begin(), rule.engines.end());
    out[key] = s;
  }
  return out;
}

}  // namespace zeroqc
