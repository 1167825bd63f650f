// The HTTP API's routes (private to src/server): the Routes class that api.cc (the service's
// plumbing, inspections, reviews) and api_products.cc (products and keys) define between them, and
// the small answers both use.
#pragma once

#include <httplib.h>

#include <functional>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/json_limits.h"
#include "server/log.h"
#include "server/product_settings.h"
#include "server/service.h"
#include "server/upload.h"

namespace zeroqc {

int HttpStatusOf(Code c);
const char* CodeName(Code c);

namespace api {

// Ids and names are checked by shape before they reach the store.
inline const std::regex kInspectionId("ins_[0-9a-f]{24}");

// Who did it, in reviews and product versions: the key's name, else its number.
inline std::string Actor(const ApiKey& key) { return key.name.empty() ? "key " + std::to_string(key.id) : key.name; }

inline const std::regex kProductName("[a-z0-9][a-z0-9_-]{0,63}");

inline void Error(httplib::Response& res, int status, const std::string& code, const std::string& message) {
  res.status = status;
  res.set_content(nlohmann::json({{"error", {{"code", code}, {"message", message}}}}).dump(), "application/json");
}

inline void Json(httplib::Response& res, int status, const nlohmann::json& j) {
  res.status = status;
  res.set_content(j.dump(), "application/json");
}

inline std::string MimeOfBlob(const std::string& blob) {
  auto ext = blob.substr(blob.rfind('.') + 1);
  if (ext == "jpg") return "image/jpeg";
  if (ext == "png" || ext == "bmp" || ext == "webp" || ext == "tiff") return "image/" + ext;
  return "application/octet-stream";
}

inline bool StartsWith(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

class Routes {
 public:
  Routes(Service& s, httplib::Server& h, std::filesystem::path web) : svc_(s), http_(h), web_(std::move(web)) {}

  // The methods served at `path`, as an Allow header lists them ("GET, POST"); empty: none.
  std::string AllowedAt(const std::string& path) const {
    std::set<std::string> methods;
    for (const auto& [m, templ, re] : route_patterns_)
      if (std::regex_match(path, re)) methods.insert(m);
    std::string allow;
    for (const auto& m : methods) allow += (allow.empty() ? "" : ", ") + m;
    return allow;
  }

  // (method, path as web/openapi.json names it) of every route registered.
  std::vector<std::pair<std::string, std::string>> routes;

  void Install();
  void InstallProducts();  // api_products.cc

 private:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&, const ApiKey&)>;

  // Registers a handler and records the paths it serves, so that a test can hold the OpenAPI
  // description to every route.
  void On(const std::string& method, const std::string& pattern, std::vector<std::string> documented, httplib::Server::Handler h) {
    if (method == "GET") http_.Get(pattern, std::move(h));
    else if (method == "POST") http_.Post(pattern, std::move(h));
    else if (method == "DELETE") http_.Delete(pattern, std::move(h));
    else if (method == "PATCH") http_.Patch(pattern, std::move(h));
    else throw std::logic_error("no such method: " + method);
    for (auto& d : documented) routes.emplace_back(method, std::move(d));
  }

  // The route's label for /metrics and the log: a registered route's template ("GET
  // /v1/inspections/{id}") or "other", never the raw path, so that no caller can add a series or write
  // into the exposition (a path is any bytes: quotes, newlines).
  std::string RouteOf(const httplib::Request& req) const {
    static const std::set<std::string> kMethods = {"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"};
    const std::string method = kMethods.count(req.method) ? req.method : "OTHER";
    for (const auto& [m, templ, re] : route_patterns_)
      if (m == method && std::regex_match(req.path, re)) return method + " " + templ;
    return method + " other";
  }

  // Route templates as patterns: each {parameter} one path segment.
  void CompileRoutes() {
    for (const auto& [method, templ] : routes)
      route_patterns_.emplace_back(method, templ, std::regex(std::regex_replace(templ, std::regex("\\{[^}/]+\\}"), "[^/]+")));
  }
  std::vector<std::tuple<std::string, std::string, std::regex>> route_patterns_;

  // Authentication, scope and rate limit in front of a handler.
  httplib::Server::Handler Guard(Scope need, Handler h);

  // A Status as the answer. The service's own failures (internal, I/O) are logged whole and answered
  // without their detail (it may name paths or SQL); a full disk also turns readiness off.
  void Fail(httplib::Response& r, const Status& s) {
    if (s.code() == Code::kNoSpace) {
      svc_.StorageFull();
      r.set_header("Retry-After", "30");
    }
    if (s.code() == Code::kInternal || s.code() == Code::kIoError) {
      log::Error("internal_error", s.message());
      return Error(r, 500, "internal", "an internal error: the server's log has the detail");
    }
    Error(r, HttpStatusOf(s.code()), CodeName(s.code()), s.message());
  }

  // As Fail, but a product whose engine is still being built is 503 "busy" with Retry-After.
  void FailWhileBuilding(httplib::Response& r, const Status& s) {
    if (s.code() != Code::kUnavailable) return Fail(r, s);
    r.set_header("Retry-After", "5");
    Error(r, 503, "busy", s.message());
  }

  std::optional<nlohmann::json> Inspection(const httplib::Request& q, httplib::Response& r) {
    const std::string id = q.matches[1];
    if (!std::regex_match(id, kInspectionId)) return Error(r, 404, "not_found", "no inspection " + id), std::nullopt;
    auto j = svc_.store().GetInspection(id);
    if (!j) Error(r, 404, "not_found", "no inspection " + id);
    return j;
  }

  std::optional<Product> FindProduct(const httplib::Request& q, httplib::Response& r) {
    const std::string name = q.matches[1];
    auto p = std::regex_match(name, kProductName) ? svc_.store().GetProduct(name) : std::nullopt;
    if (!p) Error(r, 404, "not_found", "no product " + name);
    return p;
  }

  void SendBlob(httplib::Response& r, const std::string& blob) {
    std::ifstream in(svc_.store().blobs().PathOf(blob), std::ios::binary);
    if (!in) return Error(r, 404, "not_found", "file missing");
    r.set_content(std::string((std::istreambuf_iterator<char>(in)), {}), MimeOfBlob(blob));
  }

  nlohmann::json ProductJson(const Product& p) {
    nlohmann::json refs = nlohmann::json::array();
    for (const auto& ref : svc_.store().ListReferences(p.name))
      refs.push_back({{"id", ref.id}, {"filename", ref.filename}, {"image", "/v1/products/" + p.name + "/references/" + std::to_string(ref.id) + "/image"}});
    return {{"name", p.name}, {"engine", p.engine}, {"settings", p.settings}, {"webhook_url", p.webhook_url}, {"references", refs},
            {"version", svc_.store().Revision(p.name)}};
  }

  // Reads an upload or answers the error itself.
  static std::optional<Upload> ReadUploadOr(const httplib::Request& q, httplib::Response& r) {
    auto u = ReadUpload(q);
    if (!u.ok()) return Error(r, HttpStatusOf(u.status().code()), CodeName(u.status().code()), u.status().message()), std::nullopt;
    return std::move(*u);
  }

  // Parses a request body within `limits`; answers 400 or 413 itself when it cannot.
  std::optional<nlohmann::json> Body(std::string_view text, const JsonLimits& limits, const char* what, httplib::Response& r) {
    auto j = ParseBoundedJson(text, limits, what);
    if (!j.ok()) return Fail(r, j.status()), std::nullopt;
    return *j;
  }

  // Answers 400 naming the first of `keys` present in `body` that is not a string.
  static bool StringsOnly(const nlohmann::json& body, std::initializer_list<const char*> keys, httplib::Response& r) {
    for (const char* k : keys)
      if (body.contains(k) && !body[k].is_string())
        return Error(r, 400, "bad_request", std::string("'") + k + "' must be a string"), false;
    return true;
  }

  static bool SmallEnough(const nlohmann::json& j, const char* what, httplib::Response& r) {
    auto ok = CheckJsonBounds(j.dump(), kSmallJson, what);  // already parsed: no second parse
    if (!ok.ok()) return Error(r, HttpStatusOf(ok.code()), CodeName(ok.code()), ok.message()), false;
    return true;
  }

  void PostInspection(const httplib::Request& q, httplib::Response& r);

  void ListInspections(const httplib::Request& q, httplib::Response& r);

  void InspectionFile(const httplib::Request& q, httplib::Response& r);

  void Review(const httplib::Request& q, httplib::Response& r, const ApiKey& key);

  ProductPolicy Policy() const;

  // A product made by POST or PATCH as it would be stored; false after answering what is wrong.
  bool Checked(Product& p, httplib::Response& r);

  // Stores a checked product; `status` on success.
  void StoreProduct(const Product& p, int status, httplib::Response& r, const ApiKey& key, const std::string& reason = "");

  // POST /v1/products: a new product. An existing name is 409 unless the body says "replace": true,
  // which replaces its engine, settings and webhook (a new version; references stay).
  void PostProduct(const httplib::Request& q, httplib::Response& r, const ApiKey& key);

  // PATCH /v1/products/{name}: a JSON merge patch (RFC 7396) of engine, settings and webhook: the
  // fields given change, a setting given as null is removed, the rest stay.
  void PatchProduct(const httplib::Request& q, httplib::Response& r, const ApiKey& key);

  void AddReference(const httplib::Request& q, httplib::Response& r, const ApiKey& key);
  void AddReferences(const Product& p, const httplib::Request& q, httplib::Response& r, const ApiKey& key);
  void ScoreImage(const httplib::Request& q, httplib::Response& r);

  Service& svc_;
  httplib::Server& http_;
  std::filesystem::path web_;
};

}  // namespace api
}  // namespace zeroqc
