// Defect types named from a few examples, nothing trained: N defective images per type are the
// examples; every other defective image is named after the type whose examples' descriptors its
// own is closest to (cosine to the type's mean descriptor). What `zeroqc bench --type-shots N`
// measures.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/runner.h"

namespace zeroqc {

// `records` in sample order, with the engine's descriptors. Examples are drawn per type with
// `seed`; a type with no image left after its examples still competes as a name. Returns
// {"accuracy", "chance" (1 / types), "named", "examples_per_type", "per_type": {type: {"accuracy",
// "named"}}}, or null when the dataset has fewer than two defect types or no descriptors.
nlohmann::json NameTypes(const Dataset& dataset, const std::vector<Record>& records, int shots, uint64_t seed);

}  // namespace zeroqc
