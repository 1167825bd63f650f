// A small blocking HTTP client over libcurl for the model providers. Thread-safe: one handle per call.
#pragma once

#include <map>
#include <string>

#include "vlm/sigv4.h"

namespace zeroqc {

struct HttpResponse {
  int status = 0;                              // 0 when no answer came (see error)
  std::map<std::string, std::string> headers;  // names lower-case
  std::string body;
  std::string error;  // transport failure: connect, TLS, timeout ...
  bool timed_out = false;
  double elapsed_ms = 0;
};

// Only http and https, no redirects followed. With allow_private false the connection is dropped
// before a byte is sent when the address actually connected to is loopback, private or link-local
// (error says so): a name that resolves to one at send time gains nothing.
HttpResponse HttpPost(const std::string& url, const HttpHeaders& headers, const std::string& body, int timeout_ms,
                      bool allow_private = true);

// True for loopback, private (RFC 1918, fc00::/7), link-local, carrier-grade NAT, unspecified and
// multicast addresses, IPv4-mapped IPv6 included. `ip` is a numeric IPv4 or IPv6 address.
bool IsPrivateAddress(const std::string& ip);

// "https://host:port/path?q" split into its parts; false when not http(s).
struct UrlParts {
  std::string scheme, host, path, query;  // host includes ":port" when given
};
bool SplitUrl(const std::string& url, UrlParts* out);

}  // namespace zeroqc
