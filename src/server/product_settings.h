// The plain settings of a product (numbers, names and choices), checked when they are written: a
// product whose every inspection would fail is refused at once, with the setting named.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "server/store.h"

namespace zeroqc {

// What the server allows a product: from serve's flags.
struct ProductPolicy {
  bool allow_private_models = false, allow_private_webhooks = false;
  std::vector<std::string> backbones;  // the named backbones a product may choose
  std::string default_backbone;        // recorded in a product that names none (empty: none)
};

// Everything a product must be before it is stored: its name, engine, every setting (plain and
// structured), the server's address policies for models and webhooks, and MQTT topics that no
// other product of `others` uses. Fills in the default backbone. kInvalidArgument says what is
// wrong, naming the field.
Status CheckProduct(Product& p, const ProductPolicy& policy, const std::vector<Product>& others);

// Checks types, ranges (finite numbers only), choices and which engine each setting belongs to,
// and refuses keys that are no setting. The structured settings (line_window, foreground,
// rotations, backbone, naming, auto_references, mqtt) are checked by CheckProduct below.
// kInvalidArgument names the first bad setting and what it may be.
Status CheckProductSettings(const std::string& engine, const nlohmann::json& settings);

// Those plain settings as JSON Schema properties ({"threshold": {"type": "number", ...,
// "x-engines": ["cascade", "patch"]}, ...}): the one definition that the check enforces and
// web/openapi.json's ProductInput.settings repeats (Api.ProductSettingsSchemaIsTheDescriptions holds
// them equal).
nlohmann::json ProductSettingRules();

}  // namespace zeroqc
