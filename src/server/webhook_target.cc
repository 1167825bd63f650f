#include "server/webhook_target.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <cstring>
#include <regex>

namespace zeroqc {

bool IsPrivateAddress(const std::string& ip) {
  in_addr v4{};
  in6_addr v6{};
  auto private4 = [](uint32_t a) {  // host byte order
    auto in = [a](uint32_t net, int bits) { return (a >> (32 - bits)) == (net >> (32 - bits)); };
    return in(0x00000000, 8) || in(0x0A000000, 8) || in(0x7F000000, 8) || in(0x64400000, 10) || in(0xA9FE0000, 16) ||
           in(0xAC100000, 12) || in(0xC0A80000, 16) || in(0xE0000000, 4) || a == 0xFFFFFFFF;
  };
  if (inet_pton(AF_INET, ip.c_str(), &v4) == 1) return private4(ntohl(v4.s_addr));
  if (inet_pton(AF_INET6, ip.c_str(), &v6) != 1) return false;
  const uint8_t* b = v6.s6_addr;
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  if (std::memcmp(b, kMapped, 12) == 0) return private4(uint32_t(b[12]) << 24 | b[13] << 16 | b[14] << 8 | b[15]);
  static const uint8_t kZero[15] = {};
  if (std::memcmp(b, kZero, 15) == 0 && b[15] <= 1) return true;  // :: and ::1
  return (b[0] & 0xFE) == 0xFC || (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) || b[0] == 0xFF;
}

Status CheckWebhookTarget(const std::string& url, bool allow_private) {
  static const std::regex kUrl(R"(^https?://(\[([0-9A-Fa-f:.]+)\]|([^/:?#\[\]@]+))(:\d{1,5})?([/?#].*)?$)");
  std::smatch m;
  if (!std::regex_match(url, m, kUrl)) return InvalidArgument("webhook_url must be an http(s) URL with a host");
  if (allow_private) return Status::Ok();
  const std::string host = m[2].matched ? m[2].str() : m[3].str();
  const std::string refused = "webhook_url points at a loopback, private or link-local address (" + host +
                              "); start serve with --allow-private-webhooks to permit it";
  if (host == "localhost" || host.ends_with(".localhost")) return InvalidArgument(refused);
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0) return Status::Ok();  // unknown now: cannot judge
  bool bad = false;
  for (addrinfo* a = res; a; a = a->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {0};
    const void* addr = a->ai_family == AF_INET ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
                                               : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
    if (inet_ntop(a->ai_family, addr, buf, sizeof buf) && IsPrivateAddress(buf)) bad = true;
  }
  freeaddrinfo(res);
  return bad ? InvalidArgument(refused) : Status::Ok();
}

}  // namespace zeroqc
