// The product and key routes of the HTTP API: products (create, change part, retire), their
// references, versions, calibration and named defect types; API keys (list, make, revoke).
#include <httplib.h>

#include "server/api_routes.h"
#include "server/product_settings.h"

namespace zeroqc::api {

void Routes::InstallProducts() {
  On("GET", "/v1/products", {"/v1/products"}, Guard(Scope::kRead, [this](auto&, auto& r, auto&) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& p : svc_.store().ListProducts()) out.push_back(ProductJson(p));
    Json(r, 200, {{"items", out}});
  }));
  On("POST", "/v1/products", {"/v1/products"}, Guard(Scope::kAdmin, [this](auto& q, auto& r, auto& key) { PostProduct(q, r, key); }));
  On("PATCH", R"(/v1/products/([^/]+))", {"/v1/products/{name}"}, Guard(Scope::kAdmin, [this](auto& q, auto& r, auto& key) { PatchProduct(q, r, key); }));
  On("DELETE", R"(/v1/products/([^/]+))", {"/v1/products/{name}"}, Guard(Scope::kAdmin, [this](auto& q, auto& r, auto& key) {
    auto p = FindProduct(q, r);
    if (!p) return;
    if (auto s = svc_.store().RetireProduct(p->name, Actor(key)); !s.ok()) return Fail(r, s);
    svc_.InvalidateEngine(p->name);
    r.status = 204;
  }));
  On("GET", R"(/v1/products/([^/]+))", {"/v1/products/{name}"}, Guard(Scope::kRead, [this](auto& q, auto& r, auto&) {
    if (auto p = FindProduct(q, r)) Json(r, 200, ProductJson(*p));
  }));
  On("GET", R"(/v1/products/([^/]+)/references)", {"/v1/products/{name}/references"}, Guard(Scope::kRead, [this](auto& q, auto& r, auto&) {
    if (auto p = FindProduct(q, r)) Json(r, 200, {{"items", ProductJson(*p)["references"]}});
  }));
  On("POST", R"(/v1/products/([^/]+)/references)", {"/v1/products/{name}/references"}, Guard(Scope::kAdmin, [this](auto& q, auto& r, auto& key) { AddReference(q, r, key); }));
  On("DELETE", R"(/v1/products/([^/]+)/references/(\d{1,18}))", {"/v1/products/{name}/references/{ref}"}, Guard(Scope::kAdmin, [this](auto& q, auto& r, auto& key) {
    if (auto p = FindProduct(q, r)) {
      if (!svc_.RemoveReference(p->name, std::stoll(q.matches[2]), Actor(key))) return Error(r, 404, "not_found", "no such reference");
      r.status = 204;
    }
  }));
  On("GET", R"(/v1/products/([^/]+)/defect-examples)", {"/v1/products/{name}/defect-examples"}, Guard(Scope::kRead, [this](auto& q, auto& r, auto&) {
    auto p = FindProduct(q, r);
    if (!p) return;
    nlohmann::json items = nlohmann::json::array();
    for (const auto& e : svc_.store().DefectExamples(p->name, false)) items.push_back(DefectExampleJson(e));
    Json(r, 200, {{"items", items}});
  }));
  On("DELETE", R"(/v1/products/([^/]+)/defect-examples/(\d{1,18}))", {"/v1/products/{name}/defect-examples/{example}"},
     Guard(Scope::kWrite, [this](auto& q, auto& r, auto&) {
       if (auto p = FindProduct(q, r)) {
         if (!svc_.store().RemoveDefectExample(p->name, std::stoll(q.matches[2]))) return Error(r, 404, "not_found", "no such defect example");
         r.status = 204;
       }
     }));
  On("POST", R"(/v1/products/([^/]+)/score)", {"/v1/products/{name}/score"}, Guard(Scope::kAdmin, [this](auto& q, auto& r, auto&) { ScoreImage(q, r); }));
  On("GET", R"(/v1/products/([^/]+)/calibration)", {"/v1/products/{name}/calibration"}, Guard(Scope::kRead, [this](auto& q, auto& r, auto&) {
    auto p = FindProduct(q, r);
    if (!p) return;
    auto c = svc_.Calibration(p->name);
    if (!c.ok()) return FailWhileBuilding(r, c.status());
    Json(r, 200, *c);
  }));
  On("GET", R"(/v1/products/([^/]+)/versions)", {"/v1/products/{name}/versions"}, Guard(Scope::kRead, [this](auto& q, auto& r, auto&) {
    if (auto p = FindProduct(q, r)) Json(r, 200, {{"current", svc_.store().Revision(p->name)}, {"items", svc_.store().Versions(p->name)}});
  }));
  On("POST", R"(/v1/products/([^/]+)/versions/(\d{1,18})/rollback)", {"/v1/products/{name}/versions/{version}/rollback"},
     Guard(Scope::kAdmin, [this](auto& q, auto& r, auto& key) {
       auto p = FindProduct(q, r);
       if (!p) return;
       auto v = svc_.store().Rollback(p->name, std::stoll(q.matches[2]), Actor(key));
       if (!v.ok()) return Fail(r, v.status());
       svc_.InvalidateEngine(p->name);
       Json(r, 200, {{"version", *v}, {"rolled_back_to", std::stoll(q.matches[2])}, {"product", ProductJson(*svc_.store().GetProduct(p->name))}});
     }));
  On("GET", R"(/v1/products/([^/]+)/references/(\d{1,18})/image)", {"/v1/products/{name}/references/{ref}/image"}, Guard(Scope::kRead, [this](auto& q, auto& r, auto&) {
    if (auto p = FindProduct(q, r))
      for (const auto& ref : svc_.store().ListReferences(p->name))
        if (ref.id == std::stoll(q.matches[2])) return SendBlob(r, ref.blob);
    if (r.status != 404) Error(r, 404, "not_found", "no such reference");
  }));
  On("GET", "/v1/keys", {"/v1/keys"}, Guard(Scope::kAdmin, [this](auto&, auto& r, auto&) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& k : svc_.store().ListKeys())
      items.push_back({{"id", k.id}, {"scope", ScopeName(k.scope)}, {"name", k.name}, {"created_at", k.created_at},
                       {"revoked_at", k.revoked_at.empty() ? nlohmann::json() : nlohmann::json(k.revoked_at)}});
    Json(r, 200, {{"items", items}});
  }));
  On("POST", "/v1/keys", {"/v1/keys"}, Guard(Scope::kAdmin, [this](auto& q, auto& r, auto&) {
    auto body = Body(q.body, {4096, 4}, "the key", r);
    if (!body) return;
    if (!body->is_object()) return Error(r, 400, "bad_request", "send a JSON object {scope, name}");
    for (const auto& [k, v] : body->items())
      if (k != "scope" && k != "name") return Error(r, 400, "bad_request", k + " is not a key field (scope, name)");
    if (!StringsOnly(*body, {"scope", "name"}, r)) return;
    auto scope = ParseScope(body->value("scope", ""));
    if (!scope.ok()) return Error(r, 400, "bad_request", "scope: read, write (also read) or admin (everything); it is required");
    const std::string name = body->value("name", "");
    if (name.size() > 128) return Error(r, 400, "bad_request", "name: at most 128 characters");
    int64_t id = 0;
    auto key = svc_.store().CreateKey(*scope, name, &id);
    if (!key.ok()) return Fail(r, key.status());
    Json(r, 201, {{"id", id}, {"key", *key}, {"scope", ScopeName(*scope)}, {"name", name}});
  }));
  On("DELETE", R"(/v1/keys/(\d{1,18}))", {"/v1/keys/{id}"}, Guard(Scope::kAdmin, [this](auto& q, auto& r, auto&) {
    if (auto s = svc_.store().RevokeKey(std::stoll(q.matches[1])); !s.ok()) return Fail(r, s);
    r.status = 204;
  }));
}

ProductPolicy Routes::Policy() const {
  const auto& c = svc_.config();
  return {c.allow_private_models, c.allow_private_webhooks, c.backbones, c.default_backbone};
}

// A product made by POST or PATCH as it would be stored; false after answering what is wrong.
bool Routes::Checked(Product& p, httplib::Response& r) {
  if (!SmallEnough(p.settings, "'settings'", r)) return false;
  if (auto c = CheckProduct(p, Policy(), svc_.store().ListProducts()); !c.ok()) return Error(r, 400, "bad_request", c.message()), false;
  return true;
}

// Stores a checked product; `status` on success.
void Routes::StoreProduct(const Product& p, int status, httplib::Response& r, const ApiKey& key, const std::string& reason) {
  if (auto s = svc_.store().PutProduct(p, Actor(key), reason); !s.ok()) return Fail(r, s);
  svc_.InvalidateEngine(p.name);
  Json(r, status, ProductJson(p));
}

// POST /v1/products: a new product. An existing name is 409 unless the body says "replace": true,
// which replaces its engine, settings and webhook (a new version; references stay).
void Routes::PostProduct(const httplib::Request& q, httplib::Response& r, const ApiKey& key) {
  auto parsed = Body(q.body, {64 * 1024, 20}, "the product", r);
  if (!parsed) return;
  auto& body = *parsed;
  if (!body.is_object()) return Error(r, 400, "bad_request", "send a JSON object {name, engine, settings, webhook_url, webhook_secret}");
  if (!StringsOnly(body, {"name", "engine", "webhook_url", "webhook_secret"}, r)) return;
  if (body.contains("replace") && !body["replace"].is_boolean()) return Error(r, 400, "bad_request", "replace must be true or false");
  Product p;
  p.name = body.value("name", "");
  p.engine = body.value("engine", "patch");
  p.settings = body.value("settings", nlohmann::json::object());
  p.webhook_url = body.value("webhook_url", "");
  p.webhook_secret = body.value("webhook_secret", "");
  if (!Checked(p, r)) return;  // what is wrong with it first, then whether it may replace
  const bool existed = svc_.store().GetProduct(p.name).has_value();
  if (existed && !body.value("replace", false))
    return Error(r, 409, "conflict",
                 "product '" + p.name + "' exists: PATCH /v1/products/" + p.name + " changes some of it, or send \"replace\": true to replace all of it");
  StoreProduct(p, existed ? 200 : 201, r, key);
}

// PATCH /v1/products/{name}: a JSON merge patch (RFC 7396) of engine, settings and webhook: the
// fields given change, a setting given as null is removed, the rest stay.
void Routes::PatchProduct(const httplib::Request& q, httplib::Response& r, const ApiKey& key) {
  auto found = FindProduct(q, r);
  if (!found) return;
  auto parsed = Body(q.body, {64 * 1024, 20}, "the change", r);
  if (!parsed) return;
  auto& body = *parsed;
  if (!body.is_object() || body.empty())
    return Error(r, 400, "bad_request", "send a JSON object with some of {engine, settings, webhook_url, webhook_secret}");
  for (const auto& [k, v] : body.items())
    if (k != "engine" && k != "settings" && k != "webhook_url" && k != "webhook_secret" && k != "reason")
      return Error(r, 400, "bad_request", k == "name" ? "a product's name does not change" : k + " is not a product field (engine, settings, webhook_url, webhook_secret; and reason)");
  if (!StringsOnly(body, {"engine", "webhook_url", "webhook_secret", "reason"}, r)) return;
  const std::string reason = body.value("reason", "");
  if (reason.size() > 500) return Error(r, 400, "bad_request", "reason: at most 500 characters");
  Product p = *found;
  p.engine = body.value("engine", p.engine);
  p.webhook_url = body.value("webhook_url", p.webhook_url);
  p.webhook_secret = body.value("webhook_secret", p.webhook_secret);
  const auto s = body.find("settings");
  if (s != body.end()) {
    if (!s->is_object()) return Error(r, 400, "bad_request", "settings must be an object (a setting set to null is removed)");
    p.settings.merge_patch(*s);
  }
  // The backbone recorded by default belongs to the embedded engine: a move to the model drops it.
  if (p.engine == "vlm" && (s == body.end() || !s->contains("backbone"))) p.settings.erase("backbone");
  if (Checked(p, r)) StoreProduct(p, 200, r, key, reason);
}

void Routes::AddReference(const httplib::Request& q, httplib::Response& r, const ApiKey& key) {
  auto p = FindProduct(q, r);
  if (!p) return;
  if (q.is_multipart_form_data() && q.files.count("image") > 1) return AddReferences(*p, q, r, key);
  auto u = ReadUploadOr(q, r);
  if (!u) return;
  auto id = svc_.AddReference(p->name, u->bytes, u->filename, Actor(key));
  if (!id.ok()) return Fail(r, id.status());
  Json(r, 201, {{"id", *id}, {"filename", u->filename}, {"image", "/v1/products/" + p->name + "/references/" + std::to_string(*id) + "/image"}});
}

// Several "image" parts in one multipart upload: one version for them all (a batch of reference
// photos from the page is one change, not sixteen).
void Routes::AddReferences(const Product& p, const httplib::Request& q, httplib::Response& r, const ApiKey& key) {
  for (const auto& [k, v] : q.files)
    if (k != "image") return Error(r, 400, "bad_request", "a reference upload takes only 'image' parts, not '" + k.substr(0, 64) + "'");
  std::vector<std::pair<std::string_view, std::string>> images;
  auto [from, to] = q.files.equal_range("image");
  for (auto it = from; it != to; ++it) images.emplace_back(it->second.content, it->second.filename);
  auto ids = svc_.AddReferences(p.name, images, Actor(key));
  if (!ids.ok()) return Fail(r, ids.status());
  nlohmann::json items = nlohmann::json::array();
  for (size_t i = 0; i < ids->size(); ++i)
    items.push_back({{"id", (*ids)[i]}, {"filename", images[i].second.substr(0, 255)},
                     {"image", "/v1/products/" + p.name + "/references/" + std::to_string((*ids)[i]) + "/image"}});
  Json(r, 201, {{"items", items}, {"version", svc_.store().Revision(p.name)}});
}

// POST /v1/products/{name}/score: the product's engine judges one photo by its references alone;
// nothing is stored (the page's setup check of known good and defective photos).
void Routes::ScoreImage(const httplib::Request& q, httplib::Response& r) {
  auto p = FindProduct(q, r);
  if (!p) return;
  auto u = ReadUploadOr(q, r);
  if (!u) return;
  if (!u->fields.empty()) return Error(r, 400, "bad_request", "a score upload takes only the image (and its filename)");
  auto result = svc_.Score(p->name, u->bytes);
  if (!result.ok()) return FailWhileBuilding(r, result.status());
  nlohmann::json j = ToJson(*result);
  j["image"]["path"] = u->filename;
  Json(r, 200, j);
}

}  // namespace zeroqc::api
