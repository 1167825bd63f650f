#include "server/api.h"

#include <httplib.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <tuple>

#include "core/json_limits.h"
#include "engines/patch/patch_engine.h"
#include "server/api_routes.h"
#include "server/log.h"
#include "server/mqtt.h"
#include "server/product_settings.h"
#include "server/upload.h"
#include "server/webhook_target.h"

namespace zeroqc {
namespace {

// When the request being served on this thread arrived (set before routing, read by the logger).
thread_local std::chrono::steady_clock::time_point request_start;

// The largest request body: an image at the upload limit, base64 in a JSON upload, and headroom.
// The workers' limit and the front's, which refuses a larger Content-Length before reading it.
int64_t MaxRequestBody(const ServiceConfig& c) { return c.limits.max_bytes * 4 / 3 + 64 * 1024; }

// A name shown on the page, in results and on the PLC's side: printable, no spaces at either end
// ("anomaly " would pass for the engine's own "anomaly"), no C1 controls, and none of Unicode's
// direction controls (U+200E/F, U+202A-E, U+2066-9), which reorder what the reader sees.
bool DefectNameOk(const std::string& n) {
  if (n.empty() || n.size() > 64 || n.front() == ' ' || n.back() == ' ') return false;
  std::string lower = n;
  for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "anomaly") return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const auto c = static_cast<unsigned char>(n[i]);
    if (c < 0x20 || c == 0x7f) return false;
    const auto c1 = i + 1 < n.size() ? static_cast<unsigned char>(n[i + 1]) : 0, c2 = i + 2 < n.size() ? static_cast<unsigned char>(n[i + 2]) : 0;
    if (c == 0xC2 && c1 >= 0x80 && c1 <= 0x9F) return false;                                    // C1 controls
    if (c == 0xE2 && c1 == 0x80 && (c2 == 0x8E || c2 == 0x8F || (c2 >= 0xAA && c2 <= 0xAE))) return false;
    if (c == 0xE2 && c1 == 0x81 && c2 >= 0xA6 && c2 <= 0xA9) return false;
  }
  return true;
}

// 128 random bits as hex: the secret that the front adds to every request it forwards.
std::string RandomToken() {
  std::random_device rd;
  std::string out;
  char buf[9];
  for (int i = 0; i < 4; ++i) std::snprintf(buf, sizeof buf, "%08x", unsigned(rd())), out += buf;
  return out;
}

}  // namespace

namespace api {

void Routes::Install() {
  http_.set_payload_max_length(size_t(MaxRequestBody(svc_.config())));
  http_.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - request_start).count();
    const std::string route = RouteOf(req);
    svc_.CountRequest(route, res.status, s);
    // A 503 or 507 is a deliberate answer (queue full, busy, database away, disk full: each logged where it is decided),
    // and /readyz's is what a probe asks for: a warning, or nothing. Other 5xx are errors.
    const nlohmann::json fields = {{"method", req.method}, {"route", route}, {"status", res.status}, {"duration_ms", 1000 * s}};
    const bool deliberate = res.status == 503 || res.status == 507;
    if (deliberate && route != "GET /readyz") log::Warn("http_unavailable", route + " answered " + std::to_string(res.status), fields);
    else if (res.status >= 500 && !deliberate) log::Error("http_error", route + " answered " + std::to_string(res.status), fields);
  });
  // An answer with no body of ours (an unknown route, a request cpp-httplib refused) still says
  // what went wrong, in the same JSON shape as every other error.
  http_.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    // A path that is served, with another method (TRACE, PUT, ...): 405 and what is allowed.
    const std::string allow = AllowedAt(req.path);
    if (!allow.empty() && (res.status == 404 || res.status == 400) && (", " + allow + ", ").find(", " + req.method + ", ") == std::string::npos) {
      res.set_header("Allow", allow);
      Error(res, 405, "method_not_allowed", req.method + " is not served here; " + allow + " are");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (res.status == 404) Error(res, 404, "not_found", "no such route for " + req.method + " (the routes: /openapi.json)");
    else if (res.status == 405) Error(res, 405, "bad_request", "this method is not served here");
    else if (res.status == 413) Error(res, 413, "too_large", "the request body is over the limit");
    else if (res.status >= 500) Error(res, res.status, "internal", "an internal error");
    else Error(res, res.status, "bad_request", "a malformed HTTP request");
    return httplib::Server::HandlerResponse::Handled;
  }));
  On("GET", "/healthz", {"/healthz"}, [](const httplib::Request&, httplib::Response& res) { Json(res, 200, {{"status", "ok"}}); });
  On("GET", "/readyz", {"/readyz"}, [this](const httplib::Request&, httplib::Response& res) {
    const bool ok = svc_.ready() && svc_.store().schema_version() == Store::kSchemaVersion;
    Json(res, ok ? 200 : 503, {{"ready", ok}, {"queue_depth", svc_.store().CountByStatus("queued")}});
  });
  On("GET", "/metrics", {"/metrics"}, [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(svc_.MetricsText(), "text/plain; version=0.0.4");
  });

  // Who the key is: the page shows only what its scope may do.
  On("GET", "/v1/whoami", {"/v1/whoami"}, Guard(Scope::kRead, [](auto&, auto& r, auto& key) {
    Json(r, 200, {{"id", key.id}, {"scope", ScopeName(key.scope)}, {"name", key.name}});
  }));
  On("POST", "/v1/inspections", {"/v1/inspections"}, Guard(Scope::kWrite, [this](auto& q, auto& r, auto&) { PostInspection(q, r); }));
  On("GET", "/v1/inspections", {"/v1/inspections"}, Guard(Scope::kRead, [this](auto& q, auto& r, auto&) { ListInspections(q, r); }));
  On("GET", R"(/v1/inspections/([^/]+))", {"/v1/inspections/{id}"}, Guard(Scope::kRead, [this](auto& q, auto& r, auto&) {
    if (auto j = Inspection(q, r)) Json(r, 200, *j);
  }));
  On("GET", R"(/v1/inspections/([^/]+)/(image|overlay))", {"/v1/inspections/{id}/image", "/v1/inspections/{id}/overlay"}, Guard(Scope::kRead, [this](auto& q, auto& r, auto&) { InspectionFile(q, r); }));
  On("POST", R"(/v1/inspections/([^/]+)/review)", {"/v1/inspections/{id}/review"}, Guard(Scope::kWrite, [this](auto& q, auto& r, auto& key) { Review(q, r, key); }));

  InstallProducts();
  // The station this process runs (serve --station): its state, its last frame, a software trigger.
  auto station = [this](httplib::Response& r) {
    auto* st = svc_.station();
    if (!st) Error(r, 404, "not_found", "this server runs no station (serve --station FILE)");
    return st;
  };
  On("GET", "/v1/station", {"/v1/station"}, Guard(Scope::kRead, [station](auto&, auto& r, auto&) {
    if (auto* st = station(r)) Json(r, 200, st->State());
  }));
  On("GET", "/v1/station/frame", {"/v1/station/frame"}, Guard(Scope::kRead, [station](auto&, auto& r, auto&) {
    auto* st = station(r);
    if (!st) return;
    const std::string jpg = st->LastFrameJpeg();
    if (jpg.empty()) return Error(r, 404, "not_found", "the station has taken no frame yet");
    r.set_header("Cache-Control", "no-store");
    r.set_content(jpg, "image/jpeg");
  }));
  On("POST", "/v1/station/trigger", {"/v1/station/trigger"}, Guard(Scope::kWrite, [station](auto&, auto& r, auto&) {
    auto* st = station(r);
    if (!st) return;
    if (!st->Fire()) return Error(r, 409, "conflict", "this station is triggered by its PLC or the camera's Line0 input, not by the API");
    Json(r, 202, {{"triggered", true}});
  }));
  On("GET", "/v1/webhooks/dead-letters", {"/v1/webhooks/dead-letters"}, Guard(Scope::kAdmin, [this](auto&, auto& r, auto&) {
    Json(r, 200, {{"items", svc_.store().DeadLetters()}});
  }));
  if (!web_.empty()) {
    for (auto [path, file, mime] : {std::tuple{"/", "index.html", "text/html; charset=utf-8"},
                                    {"/app.js", "app.js", "text/javascript; charset=utf-8"},
                                    {"/line.js", "line.js", "text/javascript; charset=utf-8"},
                                    {"/setup.js", "setup.js", "text/javascript; charset=utf-8"},
                                    {"/station.js", "station.js", "text/javascript; charset=utf-8"},
                                    {"/openapi.json", "openapi.json", "application/json"},
                                    {"/style.css", "style.css", "text/css; charset=utf-8"}}) {
      On("GET", path, {path}, [this, file = std::string(file), mime = std::string(mime)](const httplib::Request&, httplib::Response& res) {
        std::ifstream in(web_ / file, std::ios::binary);
        if (!in) return Error(res, 404, "not_found", "the web page is not installed");
        res.set_content(std::string((std::istreambuf_iterator<char>(in)), {}), mime);
      });
    }
  }
  CompileRoutes();
}

// Authentication, scope and rate limit in front of a handler.
httplib::Server::Handler Routes::Guard(Scope need, Handler h) {
  return [this, need, h](const httplib::Request& req, httplib::Response& res) {
    const std::string auth = req.get_header_value("Authorization");
    auto refuse = [&](const std::string& why) {
      if (double wait = svc_.FailedAuthentication(req.get_header_value(kPeerHeader)); wait > 0) {
        res.set_header("Retry-After", std::to_string(int(std::ceil(wait))));
        return Error(res, 429, "rate_limited", "too many failed authentications from this address: slow down");
      }
      res.set_header("WWW-Authenticate", "Bearer");
      Error(res, 401, "unauthorized", why);
    };
    if (!StartsWith(auth, "Bearer ")) return refuse("send an API key as 'Authorization: Bearer <key>' (zeroqc keys create)");
    auto found = svc_.store().FindKey(auth.substr(7));
    if (!found.ok()) {  // the database, not the caller: not a failed authentication
      log::Warn("database_unavailable", found.status().message());
      res.set_header("Retry-After", "5");
      return Error(res, 503, "unavailable", "the service cannot reach its database: try again shortly");
    }
    const auto& key = *found;
    if (!key) return refuse("unknown or revoked API key");
    if (int(key->scope) < int(need))
      return Error(res, 403, "forbidden", std::string("this needs a key with scope ") + ScopeName(need) + ", yours is " + ScopeName(key->scope));
    if (double wait = svc_.RateLimit(key->id); wait > 0) {
      res.set_header("Retry-After", std::to_string(int(std::ceil(wait))));
      return Error(res, 429, "rate_limited", "too many requests for this key: slow down");
    }
    h(req, res, *key);
  };
}

void Routes::PostInspection(const httplib::Request& q, httplib::Response& r) {
  auto u = ReadUploadOr(q, r);
  if (!u) return;
  NewInspection n;
  // A JSON upload's fields are strings: {"product": 5} is a mistake to name, not an unknown product.
  for (const char* f : {"product", "batch", "part_id", "station"})
    if (u->fields.contains(f) && !u->fields[f].is_string())
      return Error(r, 400, "bad_request", std::string("'") + f + "' must be a string");
  n.product = UploadField(u->fields, "product");
  if (n.product.empty()) n.product = q.get_param_value("product");
  if (!std::regex_match(n.product, kProductName)) return Error(r, 400, "bad_request", "a valid 'product' field is required");
  n.batch = UploadField(u->fields, "batch");
  n.part_id = UploadField(u->fields, "part_id");
  n.station = UploadField(u->fields, "station");
  n.image_name = u->filename.substr(0, 255);
  if (!u->metadata.is_null()) n.metadata = std::move(u->metadata);
  auto id = svc_.Submit(n, u->bytes);
  if (!id.ok()) {
    if (id.status().code() == Code::kUnavailable) r.set_header("Retry-After", "1");
    return Fail(r, id.status());
  }
  if (q.get_param_value("wait") == "true" && svc_.TryBeginWait()) {  // else: 202 at once, poll Location
    int ms = 60000;
    if (q.has_param("timeout_ms")) ms = std::clamp(std::atoi(q.get_param_value("timeout_ms").c_str()), 1, 120000);
    const bool done = svc_.WaitFor(*id, std::chrono::milliseconds(ms));
    svc_.EndWait();
    if (done) return Json(r, 200, *svc_.store().GetInspection(*id));
  }
  r.set_header("Location", "/v1/inspections/" + *id);
  Json(r, 202, {{"id", *id}, {"status", "queued"}, {"links", {{"self", "/v1/inspections/" + *id}}}});
}

void Routes::ListInspections(const httplib::Request& q, httplib::Response& r) {
  for (const char* k : {"product", "verdict", "since", "limit", "cursor"})
    if (q.has_param(k) && q.get_param_value(k).empty()) return Error(r, 400, "bad_request", std::string(k) + " is empty: leave it out");
  InspectionFilter f;
  f.product = q.get_param_value("product");
  f.verdict = q.get_param_value("verdict");
  f.since = q.get_param_value("since");
  if (q.has_param("limit")) {
    const std::string l = q.get_param_value("limit");
    if (!std::regex_match(l, std::regex("[0-9]{1,3}")) || std::stoi(l) < 1 || std::stoi(l) > 500)
      return Error(r, 400, "bad_request", "limit is a whole number from 1 to 500");
    f.limit = std::stoi(l);
  }
  if (q.has_param("cursor")) {
    const std::string c = q.get_param_value("cursor");
    if (!std::regex_match(c, std::regex("[0-9]{1,18}"))) return Error(r, 400, "bad_request", "cursor is a next_cursor from a previous page");
    f.before_seq = std::stoll(c);
  }
  if (!f.verdict.empty() && f.verdict != "OK" && f.verdict != "NOK") return Error(r, 400, "bad_request", "verdict is OK or NOK");
  Json(r, 200, svc_.store().ListInspections(f));
}

void Routes::InspectionFile(const httplib::Request& q, httplib::Response& r) {
  const std::string id = q.matches[1];
  if (!std::regex_match(id, kInspectionId)) return Error(r, 404, "not_found", "no inspection " + id);
  const bool overlay = q.matches[2] == "overlay";
  auto blob = svc_.store().InspectionBlob(id, overlay);
  if (!blob && overlay) {  // not yet (409: it will come), or never (a failed inspection has none)
    auto j = svc_.store().GetInspection(id);
    if (j && ((*j)["status"] == "queued" || (*j)["status"] == "running"))
      return Error(r, 409, "conflict", "the inspection has not finished: its overlay comes with its result");
  }
  if (!blob) return Error(r, 404, "not_found", overlay ? "no overlay: no inspection " + id + ", or it failed" : "no inspection " + id);
  SendBlob(r, *blob);
}

void Routes::Review(const httplib::Request& q, httplib::Response& r, const ApiKey& key) {
  auto j = Inspection(q, r);
  if (!j) return;
  auto parsed = Body(q.body, {64 * 1024, 8}, "the review", r);
  if (!parsed) return;
  auto& body = *parsed;
  if (!body.is_object() || !body.contains("verdict") || (body["verdict"] != "OK" && body["verdict"] != "NOK"))
    return Error(r, 400, "bad_request", "review body: {\"verdict\": \"OK\"|\"NOK\", \"comment\": \"...\", \"reviewer\": \"...\"}");
  if (!StringsOnly(body, {"comment", "reviewer"}, r)) return;
  // Named defect regions: examples that name later parts' regions.
  std::vector<DefectExample> named;
  if (body.contains("defects")) {
    const auto& d = body["defects"];
    const char* shape = "'defects': up to 20 of {\"box\": {\"x_min\", \"y_min\", \"x_max\", \"y_max\"} in image pixels, \"name\": \"1-64 characters\"}";
    if (!d.is_array() || d.size() > 20) return Error(r, 400, "bad_request", shape);
    for (const auto& x : d) {
      if (!x.is_object() || !x.contains("box") || !x["box"].is_object() || !x.contains("name") || !x["name"].is_string())
        return Error(r, 400, "bad_request", shape);
      DefectExample e;
      e.name = x["name"];
      if (!DefectNameOk(e.name))
        return Error(r, 400, "bad_request",
                     "a defect name is 1-64 printable characters without spaces at either end, no direction controls, "
                     "and not 'anomaly' (in any case)");
      int* fields[] = {&e.box.x_min, &e.box.y_min, &e.box.x_max, &e.box.y_max};
      const char* names[] = {"x_min", "y_min", "x_max", "y_max"};
      for (int k = 0; k < 4; ++k) {
        const auto& v = x["box"].contains(names[k]) ? x["box"][names[k]] : nlohmann::json();
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 1'000'000)
          return Error(r, 400, "bad_request", std::string("box.") + names[k] + " must be a whole number of pixels");
        *fields[k] = int(v.get<int64_t>());
      }
      named.push_back(std::move(e));
    }
    if (!named.empty() && body["verdict"] != "NOK") return Error(r, 400, "bad_request", "defects are named in a review that says NOK");
    if (!named.empty() && (*j)["status"] != "done") return Error(r, 409, "conflict", "the inspection has not finished: review it when it has");
  }
  // A review judges a result: one of a part still queued or running would become its final verdict
  // before the machine's, which then contradicts it.
  if ((*j)["status"] != "done" && (*j)["status"] != "failed")
    return Error(r, 409, "conflict", "the inspection has not finished: review it when it has");
  if (body.contains("add_to_references") && !body["add_to_references"].is_boolean())
    return Error(r, 400, "bad_request", "'add_to_references' must be true or false");
  const bool teach = body.value("add_to_references", false);
  if (teach && body["verdict"] != "OK") return Error(r, 400, "bad_request", "only a part reviewed OK can be added to the references");
  if (teach && (*j)["status"] != "done") return Error(r, 409, "conflict", "the inspection has not finished: review it when it has");
  if (teach && key.scope != Scope::kAdmin) {  // a reference moves every later verdict: not any line key's call
    auto product = svc_.store().GetProduct((*j)["product"]);
    if (!product || product->settings.value("reviews_add_references", "admin") != "write")
      return Error(r, 403, "forbidden",
                   "adding a reference by review needs an admin key, unless the product's settings say "
                   "\"reviews_add_references\": \"write\"");
  }
  // Who reviewed is the key's name; only an admin key may record a review on someone's behalf.
  const std::string own = Actor(key);
  if (body.contains("reviewer") && key.scope != Scope::kAdmin && body["reviewer"] != own)
    return Error(r, 403, "forbidden", "'reviewer' is your key's name (" + own + "); only an admin key may set another");
  const std::string reviewer = body.value("reviewer", own);
  // The reference first: if the image cannot be one, the review is refused whole and nothing changes.
  nlohmann::json added;
  if (teach) {
    auto ref = svc_.ReferenceFromInspection((*j)["id"], reviewer);
    if (!ref.ok()) return Fail(r, ref.status());
    const std::string product = (*j)["product"];
    added = {{"id", *ref}, {"version", svc_.store().Revision(product)},
             {"image", "/v1/products/" + product + "/references/" + std::to_string(*ref) + "/image"}};
  }
  // The regions are described before anything is stored: a bad box or an engine that cannot
  // describe regions refuses the review whole.
  if (!named.empty()) {
    auto described = svc_.DescribeDefects((*j)["id"], std::move(named));
    if (!described.ok())
      return Fail(r, described.status());
    named = std::move(*described);
  }
  auto s = svc_.store().AddReview((*j)["id"], body["verdict"], body.value("comment", ""), reviewer, (*j)["product"], named);
  if (!s.ok()) return Fail(r, s);
  auto out = *svc_.store().GetInspection((*j)["id"]);
  if (teach) out["added_reference"] = added;
  Json(r, 201, out);
}

}  // namespace api

using api::Routes;
using api::Error;

int HttpStatusOf(Code c) {
  switch (c) {
    case Code::kTooLarge: return 413;
    case Code::kUnsupported: return 415;
    case Code::kCorrupt:
    case Code::kIncomplete: return 422;
    case Code::kNotFound: return 404;
    case Code::kInvalidArgument: return 400;
    case Code::kUnavailable: return 503;
    case Code::kConflict: return 409;
    case Code::kNoSpace: return 507;
    default: return 500;
  }
}

const char* CodeName(Code c) {
  switch (c) {
    case Code::kTooLarge: return "too_large";
    case Code::kUnsupported: return "unsupported_media";
    case Code::kCorrupt:
    case Code::kIncomplete: return "corrupt_image";
    case Code::kNotFound: return "not_found";
    case Code::kInvalidArgument: return "bad_request";
    case Code::kUnavailable: return "queue_full";
    case Code::kConflict: return "conflict";
    case Code::kNoSpace: return "insufficient_storage";
    default: return "internal";
  }
}

StatusOr<std::unique_ptr<ApiServer>> ApiServer::Start(Service& service, const std::string& bind, int port,
                                                      const std::filesystem::path& web_dir, FrontLimits limits) {
  auto s = std::unique_ptr<ApiServer>(new ApiServer());
  s->http_ = std::make_unique<httplib::Server>();
  // Every answer: no MIME sniffing, no framing (clickjacking), and a page that loads only its own
  // script and style and talks only to this server (images from blobs and the camera as data/blob URLs).
  s->http_->set_default_headers({{"X-Content-Type-Options", "nosniff"},
                                 {"X-Frame-Options", "DENY"},
                                 {"Referrer-Policy", "no-referrer"},
                                 {"Content-Security-Policy",
                                  "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                                  "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"}});
  auto routes = std::make_shared<Routes>(service, *s->http_, web_dir);
  routes->Install();
  s->routes_ = routes->routes;
  // Only what came through the front is served (it proves that with a token no one else sees), so
  // its peer header is the caller's address. Stamps the request's start for the latency histogram.
  // Holding `routes` here keeps them alive as long as the server.
  const std::string token = RandomToken();
  s->http_->set_pre_routing_handler([routes, token](const httplib::Request& req, httplib::Response& res) {
    request_start = std::chrono::steady_clock::now();
    if (req.get_header_value(kFrontHeader) != token) {
      Error(res, 403, "forbidden", "this port takes requests only from zeroqc's own front");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  const int workers = s->http_->bind_to_any_port("127.0.0.1");
  if (workers <= 0) return IoError("cannot listen on a loopback port for the HTTP workers");
  limits.max_body = MaxRequestBody(service.config());
  auto front = Front::Start(bind, port, workers, token, limits, [routes](const std::string& path) { return routes->AllowedAt(path); });
  if (!front.ok()) return front.status();
  s->front_ = std::move(*front);
  s->port_ = s->front_->port();
  s->thread_ = std::thread([srv = s->http_.get()] { srv->listen_after_bind(); });
  while (!s->http_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return s;
}

ApiServer::~ApiServer() {
  Stop();
  if (thread_.joinable()) thread_.join();
}

void ApiServer::Stop() {
  if (front_) front_->Stop();
  if (http_) http_->stop();
}

void ApiServer::Wait() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace zeroqc
