#include "core/hash.h"

#include <fstream>

#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace zeroqc {

std::string HexLower(std::string_view bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) out += {kHex[c >> 4], kHex[c & 15]};
  return out;
}

std::string Sha256Hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  return HexLower({reinterpret_cast<char*>(md), len});
}

StatusOr<std::string> Sha256File(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return IoError("cannot read " + path.string());
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  return Sha256Hex(bytes);
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), int(key.size()), reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  return {reinterpret_cast<char*>(md), len};
}

}  // namespace zeroqc
