#include "vlm/http.h"

#include <arpa/inet.h>

#include <cstring>

#include <chrono>
#include <mutex>

#include <curl/curl.h>

namespace zeroqc {
namespace {

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon), value = line.substr(colon + 1);
    for (auto& c : name) c = char(std::tolower((unsigned char)c));
    auto b = value.find_first_not_of(" \t"), e = value.find_last_not_of(" \t\r\n");
    (*static_cast<std::map<std::string, std::string>*>(user))[name] = b == std::string::npos ? "" : value.substr(b, e - b + 1);
  }
  return size * n;
}

}  // namespace

bool SplitUrl(const std::string& url, UrlParts* out) {
  auto sep = url.find("://");
  if (sep == std::string::npos) return false;
  out->scheme = url.substr(0, sep);
  if (out->scheme != "http" && out->scheme != "https") return false;
  auto rest = url.substr(sep + 3);
  auto slash = rest.find('/');
  out->host = rest.substr(0, slash);
  std::string target = slash == std::string::npos ? "/" : rest.substr(slash);
  auto q = target.find('?');
  out->path = target.substr(0, q);
  out->query = q == std::string::npos ? "" : target.substr(q + 1);
  return !out->host.empty();
}

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

HttpResponse HttpPost(const std::string& url, const HttpHeaders& headers, const std::string& body, int timeout_ms,
                      bool allow_private) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  HttpResponse r;
  CURL* curl = curl_easy_init();
  if (!curl) {
    r.error = "cannot create an HTTP handle";
    return r;
  }
  curl_slist* list = nullptr;
  for (const auto& [k, v] : headers) list = curl_slist_append(list, (k + ": " + v).c_str());
  list = curl_slist_append(list, "Expect:");  // no 100-continue round trip for large image bodies
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");  // never file://, gopher:// ...
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  std::string refused_ip;
  if (!allow_private) {
    curl_easy_setopt(curl, CURLOPT_PREREQDATA, &refused_ip);
    curl_easy_setopt(curl, CURLOPT_PREREQFUNCTION, +[](void* out, char* ip, char*, int, int) -> int {
      if (!IsPrivateAddress(ip)) return CURL_PREREQFUNC_OK;
      *static_cast<std::string*>(out) = ip;
      return CURL_PREREQFUNC_ABORT;
    });
  }
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, long(timeout_ms));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, long(std::min(timeout_ms, 10000)));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for timeouts
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r.headers);
  const auto t0 = std::chrono::steady_clock::now();
  CURLcode rc = curl_easy_perform(curl);
  r.elapsed_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (rc != CURLE_OK && !refused_ip.empty()) {
    r.error = "refused to send to " + refused_ip + ": a loopback, private or link-local address";
  } else if (rc != CURLE_OK) {
    r.error = curl_easy_strerror(rc);
    r.timed_out = rc == CURLE_OPERATION_TIMEDOUT;
  } else {
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    r.status = int(status);
  }
  curl_slist_free_all(list);
  curl_easy_cleanup(curl);
  return r;
}

}  // namespace zeroqc
