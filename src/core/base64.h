// Base64 (RFC 4648, standard alphabet, padded) through OpenSSL: images in JSON and data URLs.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace zeroqc {

std::string Base64Encode(std::span<const uint8_t> bytes);
// Accepts padded input with optional whitespace; anything else is an error.
StatusOr<std::vector<uint8_t>> Base64Decode(std::string_view text);

}  // namespace zeroqc
