// The plain settings of a product (numbers, names and choices), checked when they are written: a
// product whose every inspection would fail is refused at once, with the setting named.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace zeroqc {

// Checks types, ranges (finite numbers only), choices and which engine each setting belongs to,
// and refuses keys that are no setting. The structured settings (line_window, foreground,
// rotations, backbone, naming, auto_references, mqtt) are checked by the API beside it.
// kInvalidArgument names the first bad setting and what it may be.
Status CheckProductSettings(const std::string& engine, const nlohmann::json& settings);

// Those plain settings as JSON Schema properties ({"threshold": {"type": "number", ...,
// "x-engines": ["cascade", "patch"]}, ...}): the one definition that the check enforces and
// web/openapi.json's ProductInput.settings repeats (Api.ProductSettingsSchemaIsTheDescriptions holds
// them equal).
nlohmann::json ProductSettingRules();

}  // namespace zeroqc
