// Turning a model's text into the reference schema: tolerant, bounded JSON extraction, validation,
// and boxes mapped from the model's convention to original image pixels.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.h"
#include "vlm/profile.h"

namespace zeroqc {

// The first JSON object in `text`, tolerating markdown fences, prose around it, single-quoted
// pseudo-JSON, Python literals (True/False/None) and trailing commas. Refuses inputs over 1 MB or
// nested deeper than 32 levels. Never evaluates anything.
StatusOr<nlohmann::json> ExtractJson(std::string_view text);

struct ModelObject {
  DefectObject object;                    // box not yet mapped
  std::optional<std::vector<double>> raw_box;  // 4 numbers as the model gave them
  bool box_named = false;                 // given as {x_min, ...} (order fixed) rather than a bare array
};

struct ModelAnswer {
  std::string text;
  std::vector<ModelObject> objects;
};

// Validates the schema: an "objects" array whose items have a qc of OK or NOK (any case; PASS/FAIL
// too) and, when present, a box of four numbers. Missing name/color/reason become empty strings.
StatusOr<ModelAnswer> ParseAnswer(const nlohmann::json& j);

// Maps a model box to original pixels. `sent` is the size of the image the model saw, `original`
// the size of the QC image. Clamps, swaps inverted corners; nullopt for a degenerate box.
std::optional<BoundingBox> MapBox(const std::vector<double>& v, bool named, BoxFormat format, int sent_w, int sent_h,
                                  int original_w, int original_h);

}  // namespace zeroqc
