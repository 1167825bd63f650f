// AWS Signature Version 4 for requests signed in headers (Bedrock Converse and any AWS JSON API).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace zeroqc {

struct AwsCredentials {
  std::string access_key_id, secret_access_key, session_token;  // token empty for long-term keys
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct SigningRequest {
  std::string method;  // "POST"
  // The path as it goes on the wire (Bedrock's model id already percent-encoded). It is encoded
  // once more for the canonical URI, as every AWS service but S3 expects.
  std::string path;
  std::string query;  // after '?', may be empty
  HttpHeaders headers;  // must include Host
  std::string body;
};

struct SigV4Options {
  std::string region, service;  // e.g. "us-east-1", "bedrock"
  std::string amz_date;         // "20150830T123600Z" (UTC)
  bool normalize_path = true;   // remove dot segments and repeated slashes
  bool sign_body_header = false;  // add and sign x-amz-content-sha256
  bool omit_session_token = false;  // add the token after signing instead of signing it
};

struct SigV4Result {
  std::string canonical_request, string_to_sign, signature;
  HttpHeaders headers_to_add;  // X-Amz-Date, X-Amz-Security-Token, X-Amz-Content-Sha256, Authorization
};

SigV4Result SignV4(const SigningRequest& request, const AwsCredentials& credentials, const SigV4Options& options);

// RFC 3986 percent-encoding of everything but unreserved characters (and '/' when keep_slash).
std::string AwsUriEncode(const std::string& s, bool keep_slash);

// The current time as an amz-date ("YYYYMMDDTHHMMSSZ").
std::string AmzDateNow();

}  // namespace zeroqc
