// Where a product's webhook may point. A webhook is a request the server makes on a client's
// behalf: aimed at loopback, private or link-local addresses (a cloud's metadata service at
// 169.254.169.254) it would reach what the client cannot.
#pragma once

#include <string>

#include "core/status.h"

namespace zeroqc {

// OK when `url` is http(s) and its host (a literal or every address it resolves to now) is public,
// or when `allow_private`. A name that does not resolve now is accepted (checked again on delivery
// by nobody: document it). kInvalidArgument with the reason otherwise.
Status CheckWebhookTarget(const std::string& url, bool allow_private);
// The same for any URL serve sends to (`field` and `flag` name the setting and the flag in messages):
// a model's base_url with --allow-private-models. Delivery checks the address actually connected to
// again (HttpOptions::allow_private), so a name that resolves differently later gains nothing.
Status CheckOutboundUrl(const std::string& url, bool allow_private, const std::string& field, const std::string& flag);

}  // namespace zeroqc
