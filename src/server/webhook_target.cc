#include "server/webhook_target.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <cstring>
#include <regex>

#include "vlm/http.h"

namespace zeroqc {

Status CheckWebhookTarget(const std::string& url, bool allow_private) {
  return CheckOutboundUrl(url, allow_private, "webhook_url", "--allow-private-webhooks");
}

Status CheckOutboundUrl(const std::string& url, bool allow_private, const std::string& field, const std::string& flag) {
  static const std::regex kUrl(R"(^https?://(\[([0-9A-Fa-f:.]+)\]|([^/:?#\[\]@]+))(:\d{1,5})?([/?#].*)?$)");
  std::smatch m;
  if (!std::regex_match(url, m, kUrl)) return InvalidArgument(field + " must be an http(s) URL with a host");
  if (allow_private) return Status::Ok();
  const std::string host = m[2].matched ? m[2].str() : m[3].str();
  const std::string refused = field + " points at a loopback, private or link-local address (" + host +
                              "); start serve with " + flag + " to permit it";
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
