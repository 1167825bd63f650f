// SHA-256 and HMAC-SHA256 through OpenSSL: cache keys, AWS SigV4, webhook signatures.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "core/status.h"

namespace zeroqc {

std::string Sha256Hex(std::string_view bytes);
StatusOr<std::string> Sha256File(const std::filesystem::path& path);
std::string HmacSha256(std::string_view key, std::string_view data);  // raw 32 bytes
std::string HexLower(std::string_view bytes);

}  // namespace zeroqc
