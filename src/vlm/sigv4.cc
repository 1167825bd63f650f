#include "vlm/sigv4.h"

#include <algorithm>
#include <ctime>
#include <map>

#include "core/hash.h"

namespace zeroqc {
namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Trimmed, with runs of whitespace (including folded lines) collapsed to one space.
std::string CanonicalValue(const std::string& v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::string PercentDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit((unsigned char)s[i + 1]) && std::isxdigit((unsigned char)s[i + 2])) {
      out += char(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string NormalizePath(const std::string& path) {
  std::vector<std::string> segs;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string seg = path.substr(start, end - start);
    if (seg == "..") {
      if (!segs.empty()) segs.pop_back();
    } else if (!seg.empty() && seg != ".") {
      segs.push_back(seg);
    }
    start = end + 1;
  }
  std::string out;
  for (const auto& s : segs) out += "/" + s;
  const bool trailing = path.size() > 1 && path.back() == '/' && !segs.empty();
  if (out.empty() || trailing) out += "/";
  return out;
}

std::string CanonicalQuery(const std::string& query) {
  std::vector<std::pair<std::string, std::string>> params;
  size_t start = 0;
  while (start < query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    std::string kv = query.substr(start, end - start);
    if (!kv.empty()) {
      size_t eq = kv.find('=');
      std::string k = kv.substr(0, eq), v = eq == std::string::npos ? "" : kv.substr(eq + 1);
      params.emplace_back(AwsUriEncode(PercentDecode(k), false), AwsUriEncode(PercentDecode(v), false));
    }
    start = end + 1;
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) out += (out.empty() ? "" : "&") + k + "=" + v;
  return out;
}

}  // namespace

std::string AwsUriEncode(const std::string& s, bool keep_slash) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) out += char(c);
    else out += {'%', kHex[c >> 4], kHex[c & 15]};
  }
  return out;
}

std::string AmzDateNow() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[20];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

SigV4Result SignV4(const SigningRequest& req, const AwsCredentials& cred, const SigV4Options& o) {
  SigV4Result r;
  const std::string payload_hash = Sha256Hex(req.body);
  r.headers_to_add.emplace_back("X-Amz-Date", o.amz_date);
  if (!cred.session_token.empty() && !o.omit_session_token) r.headers_to_add.emplace_back("X-Amz-Security-Token", cred.session_token);
  if (o.sign_body_header) r.headers_to_add.emplace_back("X-Amz-Content-Sha256", payload_hash);

  std::map<std::string, std::string> canon;  // sorted by lower-case name; repeats joined with ','
  auto add = [&](const std::string& name, const std::string& value) {
    auto& v = canon[Lower(name)];
    v += (v.empty() ? "" : ",") + CanonicalValue(value);
  };
  for (const auto& [k, v] : req.headers) add(k, v);
  for (const auto& [k, v] : r.headers_to_add) add(k, v);
  std::string headers, signed_headers;
  for (const auto& [k, v] : canon) {
    headers += k + ":" + v + "\n";
    signed_headers += (signed_headers.empty() ? "" : ";") + k;
  }
  const std::string path = o.normalize_path ? NormalizePath(req.path) : req.path;
  r.canonical_request = req.method + "\n" + AwsUriEncode(path.empty() ? "/" : path, true) + "\n" + CanonicalQuery(req.query) +
                        "\n" + headers + "\n" + signed_headers + "\n" + payload_hash;

  const std::string date = o.amz_date.substr(0, 8);
  const std::string scope = date + "/" + o.region + "/" + o.service + "/aws4_request";
  r.string_to_sign = "AWS4-HMAC-SHA256\n" + o.amz_date + "\n" + scope + "\n" + Sha256Hex(r.canonical_request);
  std::string key = HmacSha256("AWS4" + cred.secret_access_key, date);
  key = HmacSha256(key, o.region);
  key = HmacSha256(key, o.service);
  key = HmacSha256(key, "aws4_request");
  r.signature = HexLower(HmacSha256(key, r.string_to_sign));
  if (!cred.session_token.empty() && o.omit_session_token) r.headers_to_add.emplace_back("X-Amz-Security-Token", cred.session_token);
  r.headers_to_add.emplace_back("Authorization", "AWS4-HMAC-SHA256 Credential=" + cred.access_key_id + "/" + scope +
                                                     ", SignedHeaders=" + signed_headers + ", Signature=" + r.signature);
  return r;
}

}  // namespace zeroqc
