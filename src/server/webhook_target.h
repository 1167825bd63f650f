// Where a product's webhook may point. A webhook is a request the server makes on a client's
// behalf: aimed at loopback, private or link-local addresses (a cloud's metadata service at
// 169.254.169.254) it would reach what the client cannot.
#pragma once

#include <string>

#include "core/status.h"

namespace zeroqc {

// True for loopback, private (RFC 1918, fc00::/7), link-local, carrier-grade NAT, unspecified and
// multicast addresses, IPv4-mapped IPv6 included. `ip` is a numeric IPv4 or IPv6 address.
bool IsPrivateAddress(const std::string& ip);

// OK when `url` is http(s) and its host (a literal or every address it resolves to now) is public,
// or when `allow_private`. A name that does not resolve now is accepted (checked again on delivery
// by nobody: document it). kInvalidArgument with the reason otherwise.
Status CheckWebhookTarget(const std::string& url, bool allow_private);

}  // namespace zeroqc
