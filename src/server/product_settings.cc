#include "server/product_settings.h"

#include <cmath>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <vector>
#include <algorithm>

#include "engines/patch/patch_engine.h"
#include "server/mqtt.h"
#include "server/webhook_target.h"

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
  // The window recalibrates the threshold from the line's parts; a fixed one would be ignored.
  if (settings.contains("threshold") && settings.contains("line_window") && settings["line_window"].is_number_integer() &&
      settings["line_window"].get<int64_t>() > 0)
    return InvalidArgument("settings.threshold fixes the threshold and settings.line_window recalibrates it from the line: "
                           "set line_window to 0 with a fixed threshold");
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

Status CheckProduct(Product& p, const ProductPolicy& policy, const std::vector<Product>& others) {
  static const std::regex kName("[a-z0-9][a-z0-9_-]{0,63}");
  if (!std::regex_match(p.name, kName)) return InvalidArgument("name: 1-64 of a-z 0-9 _ -, starting with a letter or digit");
  if (p.engine != "patch" && p.engine != "vlm" && p.engine != "cascade") return InvalidArgument("engine is patch, vlm or cascade");
  json& s = p.settings;
  if (!s.is_object()) return InvalidArgument("settings must be an object");
  auto mqtt = ReadMqttSettings(s);
  if (!mqtt.ok()) return mqtt.status();
  std::vector<Product> rest;
  for (const auto& o : others)
    if (o.name != p.name) rest.push_back(o);
  ZQ_RETURN_IF_ERROR(CheckMqttTopicsAgainst(p.name, *mqtt, rest));
  ZQ_RETURN_IF_ERROR(CheckProductSettings(p.engine, s));
  if (!policy.allow_private_models && s.value("provider", "") == "ollama" && !s.contains("base_url"))
    return InvalidArgument("settings.provider ollama without a base_url talks to this machine; start serve with --allow-private-models to permit it");
  if (auto u = s.find("base_url"); u != s.end())
    ZQ_RETURN_IF_ERROR(CheckOutboundUrl(*u, policy.allow_private_models, "settings.base_url", "--allow-private-models"));
  if (!p.webhook_url.empty()) ZQ_RETURN_IF_ERROR(CheckWebhookTarget(p.webhook_url, policy.allow_private_webhooks));
  const bool model_only = p.engine == "vlm";
  auto embedded_only = [&](const char* key) {
    return InvalidArgument(std::string("settings.") + key + " needs the patch or cascade engine");
  };
  if (auto a = s.find("auto_references"); a != s.end()) {
    const bool ok = a->is_object() && a->size() == 2 && a->contains("max") && (*a)["max"].is_number_integer() && (*a)["max"].get<int64_t>() >= 0 &&
                    a->contains("margin") && (*a)["margin"].is_number() && (*a)["margin"].get<double>() > 0 && (*a)["margin"].get<double>() <= 1;
    if (!ok) return InvalidArgument("settings.auto_references: {\"max\": parts (integer >= 0), \"margin\": 0 < m <= 1}");
  }
  if (auto w = s.find("line_window"); w != s.end()) {
    const bool ok = w->is_number_integer() && ((*w) == 0 || ((*w).get<int64_t>() >= PatchEngine::kMinLineWindow && (*w).get<int64_t>() <= PatchEngine::kMaxLineWindow));
    if (!ok)
      return InvalidArgument("settings.line_window: 0 (off) or " + std::to_string(PatchEngine::kMinLineWindow) + "-" +
                             std::to_string(PatchEngine::kMaxLineWindow) + " recent parts that judge each new part with the references");
    if (model_only) return embedded_only("line_window");
  }
  if (auto f = s.find("foreground"); f != s.end()) {
    if (!f->is_boolean()) return InvalidArgument("settings.foreground: true (score the part only, not its background) or false");
    if (model_only) return embedded_only("foreground");
  }
  if (auto t = s.find("rotations"); t != s.end()) {
    if (!t->is_number_integer() || (*t != 1 && *t != 4 && *t != 8))
      return InvalidArgument("settings.rotations: 1 (off), 4 or 8 turned copies of every reference, for parts that lie at any angle");
    if (model_only) return embedded_only("rotations");
  }
  if (auto b = s.find("backbone"); b != s.end()) {
    const auto& names = policy.backbones;
    if (!b->is_string() || std::find(names.begin(), names.end(), b->get<std::string>()) == names.end()) {
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      return InvalidArgument("settings.backbone: one of " + known);
    }
    if (model_only) return embedded_only("backbone");
  } else if (!model_only && !policy.default_backbone.empty()) {
    s["backbone"] = policy.default_backbone;  // the bank is built with it: the product remembers it
  }
  if (auto n = s.find("naming"); n != s.end()) {
    const bool ok = n->is_object() && n->size() == 1 && n->contains("min_similarity") && (*n)["min_similarity"].is_number() &&
                    (*n)["min_similarity"].get<double>() >= -1 && (*n)["min_similarity"].get<double>() <= 1;
    if (!ok) return InvalidArgument("settings.naming: {\"min_similarity\": -1 <= s <= 1} (cosine to a named defect type)");
  }
  return Status::Ok();
}

}  // namespace zeroqc
