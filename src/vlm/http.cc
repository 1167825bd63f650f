#include "vlm/http.h"

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

HttpResponse HttpPost(const std::string& url, const HttpHeaders& headers, const std::string& body, int timeout_ms) {
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
  if (rc != CURLE_OK) {
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
