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

HttpResponse HttpPost(const std::string& url, const HttpHeaders& headers, const std::string& body, int timeout_ms);

// "https://host:port/path?q" split into its parts; false when not http(s).
struct UrlParts {
  std::string scheme, host, path, query;  // host includes ":port" when given
};
bool SplitUrl(const std::string& url, UrlParts* out);

}  // namespace zeroqc
