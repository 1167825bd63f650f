// The HTTP API over real HTTP on 127.0.0.1 (see api_harness.h): happy paths, auth, scopes, rate
// limits, bad uploads, back-pressure, restart with pending work, health, metrics, settings, logs.
#include <httplib.h>
#include <utime.h>

#include <fstream>
#include <future>
#include <map>
#include <regex>
#include <set>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "server/api_harness.h"
#include "server/log.h"
#include "server/product_settings.h"
#include "server/webhook_target.h"

namespace zeroqc {
namespace {

// Every API test runs against both stores.
class Api : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Store, Api, ::testing::Values("sqlite", "postgres"), StoreName);

TEST_P(Api, InspectWaitListFetchAndReview) {
  Harness h;
  h.Product("brush");
  auto r = h.Upload(h.writer, "brush", Png(true), true);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto j = nlohmann::json::parse(r->body);
  EXPECT_EQ(j["status"], "done");
  EXPECT_EQ(j["verdict"], "NOK");
  EXPECT_EQ(j["batch"], "B-17");
  EXPECT_EQ(j["metadata"]["shift"], "night");
  EXPECT_EQ(j["result"]["objects"][0]["bounding_box"]["x_min"], 20);
  const std::string id = j["id"];

  // The stored image is the uploaded one; the overlay is a JPEG.
  auto img = h.Client(h.reader).Get(("/v1/inspections/" + id + "/image").c_str());
  ASSERT_TRUE(img && img->status == 200);
  EXPECT_EQ(img->body, Png(true));
  EXPECT_EQ(img->get_header_value("Content-Type"), "image/png");
  auto ov = h.Client(h.reader).Get(("/v1/inspections/" + id + "/overlay").c_str());
  ASSERT_TRUE(ov && ov->status == 200);
  EXPECT_EQ(uint8_t(ov->body[0]), 0xFF);

  // JSON upload with base64, no wait: 202, then done.
  nlohmann::json body = {{"product", "brush"}, {"image", Base64Encode({(const uint8_t*)Png(false).data(), Png(false).size()})}, {"part_id", "P-9"}};
  r = h.Client(h.writer).Post("/v1/inspections", body.dump(), "application/json");
  ASSERT_TRUE(r && r->status == 202) << (r ? r->body : "");
  const std::string id2 = nlohmann::json::parse(r->body)["id"];
  EXPECT_EQ(r->get_header_value("Location"), "/v1/inspections/" + id2);
  EXPECT_EQ(h.WaitDone(id2)["verdict"], "OK");

  // Filters and paging.
  auto list = nlohmann::json::parse(h.Client(h.reader).Get("/v1/inspections?product=brush&verdict=NOK")->body);
  ASSERT_EQ(list["items"].size(), 1u);
  EXPECT_EQ(list["items"][0]["id"], id);
  auto page1 = nlohmann::json::parse(h.Client(h.reader).Get("/v1/inspections?limit=1")->body);
  ASSERT_EQ(page1["items"].size(), 1u);
  EXPECT_EQ(page1["items"][0]["id"], id2);  // newest first
  ASSERT_TRUE(page1["next_cursor"].is_string());
  auto page2 = nlohmann::json::parse(h.Client(h.reader).Get(("/v1/inspections?limit=1&cursor=" + page1["next_cursor"].get<std::string>()).c_str())->body);
  ASSERT_EQ(page2["items"].size(), 1u);
  EXPECT_EQ(page2["items"][0]["id"], id);
  EXPECT_TRUE(page2["next_cursor"].is_null());
  EXPECT_EQ(nlohmann::json::parse(h.Client(h.reader).Get("/v1/inspections?since=2999-01-01T00:00:00Z")->body)["items"].size(), 0u);

  // A person overrides the machine; both are kept.
  r = h.Client(h.writer).Post(("/v1/inspections/" + id + "/review").c_str(), R"({"verdict":"OK","comment":"dust, wiped off"})", "application/json");
  ASSERT_TRUE(r && r->status == 201) << (r ? r->body : "");
  j = nlohmann::json::parse(r->body);
  EXPECT_EQ(j["verdict"], "NOK");
  EXPECT_EQ(j["final_verdict"], "OK");
  EXPECT_EQ(j["reviews"][0]["reviewer"], "line 3");  // the write key's name
}

TEST_P(Api, KeysAndScopes) {
  Harness h;
  h.Product("brush");
  auto c = h.Client("");
  auto r = c.Get("/v1/inspections");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(h.Client("zq_not_a_key").Get("/v1/inspections")->status, 401);
  EXPECT_EQ(h.Upload(h.reader, "brush", Png(false), false)->status, 403);
  EXPECT_EQ(h.Client(h.writer).Post("/v1/products", R"({"name":"x"})", "application/json")->status, 403);
  EXPECT_EQ(h.Client(h.reader).Get("/v1/products")->status, 200);
  EXPECT_EQ(h.Client(h.admin).Get("/v1/webhooks/dead-letters")->status, 200);
  EXPECT_EQ(h.Client(h.writer).Get("/v1/webhooks/dead-letters")->status, 403);
  // Keys are stored hashed: the plaintext is nowhere in the database file.
  std::ifstream db(h.dir / "data/zeroqc.db", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(db)), {});
  EXPECT_EQ(bytes.find(h.admin), std::string::npos);
}

TEST_P(Api, RateLimitAnswers429WithRetryAfter) {
  Harness h([](ServiceConfig& c) {
    c.rate_per_second = 0.5;
    c.burst = 2;
  });
  auto c = h.Client(h.reader);
  EXPECT_EQ(c.Get("/v1/products")->status, 200);
  EXPECT_EQ(c.Get("/v1/products")->status, 200);
  auto r = c.Get("/v1/products");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429);
  EXPECT_GE(std::stoi(r->get_header_value("Retry-After")), 1);
  EXPECT_EQ(h.Client(h.admin).Get("/v1/products")->status, 200);  // per key
}

TEST_P(Api, BadUploadsAreRefusedClearly) {
  Harness h([](ServiceConfig& c) {
    c.limits.max_bytes = 20000;
    c.limits.max_pixels = 100 * 100;
  });
  h.Product("brush");
  auto r = h.Upload(h.writer, "brush", "\x89PNG\r\n\x1a\nthis is not a PNG at all", false);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 422) << r->body;
  EXPECT_EQ(nlohmann::json::parse(r->body)["error"]["code"], "corrupt_image");
  r = h.Upload(h.writer, "brush", Png(false, 200), false);  // 40,000 pixels
  EXPECT_EQ(r->status, 413) << r->body;
  cv::Mat noise(150, 150, CV_8UC3);
  cv::randu(noise, 0, 255);
  std::vector<uint8_t> big;
  cv::imencode(".png", noise, big);  // ~67 KB of incompressible pixels: over the byte limit
  r = h.Client(h.writer).Post("/v1/inspections?product=brush", std::string(big.begin(), big.end()), "image/png");
  EXPECT_EQ(r->status, 413) << r->body;
  r = h.Client(h.writer).Post("/v1/inspections", "hello", "text/plain");
  EXPECT_EQ(r->status, 415) << r->body;
  r = h.Upload(h.writer, "nosuchproduct", Png(false), false);
  EXPECT_EQ(r->status, 404) << r->body;
  r = h.Upload(h.writer, "../etc", Png(false), false);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(h.Client(h.reader).Get("/v1/inspections/..%2F..%2Fetc%2Fpasswd")->status, 404);
  EXPECT_EQ(h.Client(h.reader).Get("/v1/inspections/ins_000000000000000000000000/image")->status, 404);
  httplib::MultipartFormDataItems bad_ref = {{"image", "\x89PNG\r\n\x1a\n truncated", "ref.png", "image/png"}};
  r = h.Client(h.admin).Post("/v1/products/brush/references", bad_ref);
  EXPECT_EQ(r->status, 422) << r->body;  // references are checked like uploads
  EXPECT_EQ(nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush")->body)["references"].size(), 1u);
  // Nothing refused was stored.
  EXPECT_EQ(nlohmann::json::parse(h.Client(h.reader).Get("/v1/inspections")->body)["items"].size(), 0u);
}

TEST_P(Api, FullQueueAnswers503AndLosesNothing) {
  Harness h([](ServiceConfig& c) { c.queue_capacity = 2; }, /*gate_open=*/false);
  h.Product("brush");
  std::vector<std::string> ids;
  int refused = 0;
  for (int i = 0; i < 5; ++i) {
    if (i == 1)  // the first is claimed by the (blocked) worker before the rest arrive, even on a loaded machine
      for (int k = 0; k < 400; ++k) {
        auto j = nlohmann::json::parse(h.Client(h.reader).Get(("/v1/inspections/" + ids[0]).c_str())->body);
        if (j["status"] == "running") break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    auto r = h.Upload(h.writer, "brush", Png(i % 2 == 0), false);
    ASSERT_TRUE(r);
    if (r->status == 202) ids.push_back(nlohmann::json::parse(r->body)["id"]);
    else {
      EXPECT_EQ(r->status, 503) << r->body;
      EXPECT_EQ(r->get_header_value("Retry-After"), "1");
      ++refused;
    }
  }
  // One is held by the blocked worker, two wait in the queue: the rest are refused.
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_EQ(refused, 2);
  EXPECT_NE(h.Client("").Get("/metrics")->body.find("zeroqc_queue_depth 2"), std::string::npos);
  h.open.set_value();
  for (const auto& id : ids) EXPECT_EQ(h.WaitDone(id)["status"], "done");
}

// Issue 10, finding 6: parallel uploads overshot --queue 5 (9 accepted, depth 8).
TEST_P(Api, ParallelUploadsNeverOvershootTheQueue) {
  Harness h([](ServiceConfig& c) {
    c.queue_capacity = 5;
    c.rate_per_second = 1000;
    c.burst = 1000;
  }, /*gate_open=*/false);
  h.Product("brush");
  std::vector<std::future<int>> uploads;
  for (int i = 0; i < 12; ++i)  // more than the server's 8 threads answer at once
    uploads.push_back(std::async(std::launch::async, [&h] {
      auto r = h.Upload(h.writer, "brush", Png(false), false);
      return r ? r->status : -1;
    }));
  int accepted = 0;
  for (auto& f : uploads) {
    const int st = f.get();
    EXPECT_TRUE(st == 202 || st == 503) << st;
    accepted += st == 202;
  }
  // At most one taken by the (blocked) worker plus five queued. A shared queue (PostgreSQL) is
  // counted in the database plus this process's uploads in flight; an upload just inserted but not
  // yet out of flight is counted twice for a moment, so parallel uploads may be refused a little
  // early (never late: it never overshoots). Seen once in a clean-clone run: 4 of 12 accepted.
  EXPECT_LE(accepted, 6);
  EXPECT_GE(accepted, GetParam() == std::string("postgres") ? 3 : 5);
  auto list = nlohmann::json::parse(h.Client(h.reader).Get("/v1/inspections?limit=100")->body);
  EXPECT_EQ(int(list["items"].size()), accepted) << "every 202 is stored, nothing else";
  h.open.set_value();
}

// Issue 10, finding 4: ten ?wait=true requests held every server thread; /healthz timed out.
TEST_P(Api, WaitersAreBoundedAndHealthStaysResponsive) {
  Harness h([](ServiceConfig& c) {
    c.max_waiters = 2;
    c.burst = 1000;
  }, /*gate_open=*/false);
  h.Product("brush");
  std::vector<std::future<int>> waits;
  for (int i = 0; i < 10; ++i)
    waits.push_back(std::async(std::launch::async, [&h] {
      auto r = h.Upload(h.writer, "brush", Png(false), true, "&timeout_ms=5000");
      return r ? r->status : -1;
    }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto t0 = std::chrono::steady_clock::now();
  auto health = h.Client("").Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1)) << "health answers while parts are waited on";
  int accepted = 0, answered = 0;
  for (int i = 0; i < 8; ++i) accepted += waits[i].wait_for(std::chrono::seconds(3)) == std::future_status::ready && waits[i].get() == 202;
  h.open.set_value();
  for (size_t i = 8; i < waits.size(); ++i) answered += waits[i].get() != -1;
  EXPECT_GE(accepted, 6) << "all but max_waiters got 202 + Location at once";
  EXPECT_EQ(answered, 2);
  EXPECT_GT(h.Upload(h.writer, "brush", Png(false), true)->status, 0);
}

// Issue 10, finding 7: any write key could sign a review with any name; the page had no
// Content-Security-Policy, X-Frame-Options or nosniff headers.
TEST_P(Api, ReviewerIsTheKeysNameAndPagesCarrySecurityHeaders) {
  Harness h;
  h.Product("brush");
  auto up = h.Upload(h.writer, "brush", Png(true), true);
  ASSERT_TRUE(up && up->status == 200);
  const std::string path = "/v1/inspections/" + nlohmann::json::parse(up->body)["id"].get<std::string>() + "/review";
  auto r = h.Client(h.writer).Post(path.c_str(), R"({"verdict":"OK","reviewer":"the plant manager"})", "application/json");
  EXPECT_EQ(r->status, 403) << r->body;
  r = h.Client(h.writer).Post(path.c_str(), R"({"verdict":"OK"})", "application/json");
  ASSERT_EQ(r->status, 201) << r->body;
  EXPECT_NE(r->body.find("\"line 3\""), std::string::npos) << "the write key's name: " << r->body;
  r = h.Client(h.admin).Post(path.c_str(), R"({"verdict":"NOK","reviewer":"QA lead"})", "application/json");
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_NE(r->body.find("QA lead"), std::string::npos);
  for (const char* p : {"/healthz", "/v1/inspections"}) {
    auto g = h.Client(h.reader).Get(p);
    EXPECT_EQ(g->get_header_value("X-Content-Type-Options"), "nosniff") << p;
    EXPECT_EQ(g->get_header_value("X-Frame-Options"), "DENY") << p;
    EXPECT_NE(g->get_header_value("Content-Security-Policy").find("default-src 'self'"), std::string::npos) << p;
  }
}

// Issue 10, finding 7: failed authentications were not rate limited (key guessing).
TEST_P(Api, FailedAuthenticationsAreRateLimitedPerAddress) {
  Harness h([](ServiceConfig& c) {
    c.auth_failure_burst = 5;
    c.auth_failures_per_second = 0.5;
  });
  int unauthorized = 0, limited = 0;
  for (int i = 0; i < 12; ++i) {
    auto r = h.Client("zq_wrong_" + std::to_string(i)).Get("/v1/inspections");
    ASSERT_TRUE(r);
    unauthorized += r->status == 401;
    if (r->status == 429) {
      ++limited;
      EXPECT_FALSE(r->get_header_value("Retry-After").empty());
    }
  }
  EXPECT_EQ(unauthorized, 5);
  EXPECT_EQ(limited, 7);
  // A valid key from the same address is not locked out.
  EXPECT_EQ(h.Client(h.reader).Get("/v1/inspections")->status, 200);
}

TEST_P(Api, RestartResumesAcceptedWork) {
  auto dir = testing::TempDir();
  std::vector<std::string> ids;
  {  // A previous process accepted three inspections and died while running one.
    auto store = Store::Open(dir / "data", TestDbUrl());
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->PutProduct({"brush", "patch", nlohmann::json::object(), "", ""}).ok());
    auto ref = (*store)->blobs().Put(Png(false), "png");
    ASSERT_TRUE((*store)->AddReference("brush", *ref, "good.png").ok());
    for (int i = 0; i < 3; ++i) {
      NewInspection n;
      n.product = "brush";
      n.image_blob = *(*store)->blobs().Put(Png(i == 1), "png");
      ids.push_back(*(*store)->Enqueue(n));
    }
    // "running" at the moment of the crash: SQLite queues it again at start (no other process
    // can have it), PostgreSQL when its lease runs out (1 s here).
    ASSERT_TRUE((*store)->ClaimNext("crashed-worker", 1));
  }
  Harness h(nullptr, true, dir);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(h.WaitDone(ids[i])["verdict"], i == 1 ? "NOK" : "OK");
}

TEST_P(Api, HealthReadyAndMetrics) {
  Harness h;
  h.Product("brush");
  ASSERT_EQ(h.Upload(h.writer, "brush", Png(true), true)->status, 200);
  auto c = h.Client("");
  EXPECT_EQ(c.Get("/healthz")->status, 200);
  EXPECT_EQ(c.Get("/readyz")->status, 200);
  // A request is counted once its answer is sent (the server's logger): a client can read the
  // answer first, so the count may come a moment later.
  std::string m;
  for (int i = 0; i < 100; ++i) {
    m = c.Get("/metrics")->body;
    if (m.find("route=\"POST /v1/inspections\",code=\"200\"") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (const char* s : {"zeroqc_http_requests_total{route=\"POST /v1/inspections\",code=\"200\"} 1",
                        "zeroqc_inspections_total{verdict=\"NOK\"} 1", "zeroqc_inspection_duration_seconds_count 1",
                        "zeroqc_http_request_duration_seconds_bucket{le=\"+Inf\"}",
                        "zeroqc_queue_depth 0"})
    EXPECT_NE(m.find(s), std::string::npos) << s << "\n" << m;
}

// Issue 27, finding 2: a path written into /metrics. A quote and a newline in an unknown inspection id
// forged a counter line, and every random id added a series. Route labels are route templates now.
TEST_P(Api, MetricLabelsAreRouteTemplatesNeverRawPaths) {
  Harness h;
  auto anonymous = h.Client("");
  auto r = anonymous.Get("/v1/inspections/x%22%7D%201%0Azeroqc_inspections_total%7Bverdict%3D%22OK%22%7D%20999999%0A%23");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  auto reader = h.Client(h.reader);
  for (int i = 0; i < 40; ++i) {
    reader.Get(("/v1/inspections/ins_" + std::to_string(1000 + i)).c_str());
    anonymous.Get(("/nowhere/" + std::to_string(i)).c_str());
    anonymous.Get(("/v1/products/p" + std::to_string(i) + "/calibration").c_str());
  }
  const std::string m = anonymous.Get("/metrics")->body;
  EXPECT_EQ(m.find("999999"), std::string::npos) << m;
  EXPECT_EQ(m.find("ins_10"), std::string::npos) << m;
  EXPECT_NE(m.find("zeroqc_http_requests_total{route=\"GET /v1/inspections/{id}\",code=\"401\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("zeroqc_http_requests_total{route=\"GET /v1/inspections/{id}\",code=\"404\"} "), std::string::npos) << m;
  EXPECT_NE(m.find("{route=\"GET other\",code=\"404\"} 40"), std::string::npos) << m;
  EXPECT_NE(m.find("{route=\"GET /v1/products/{name}/calibration\",code=\"401\"} "), std::string::npos) << m;
  size_t series = 0;
  for (size_t at = 0; (at = m.find("\nzeroqc_http_requests_total{", at)) != std::string::npos; ++at) ++series;
  EXPECT_LE(series, 7u) << m;  // ids, unknown paths and names: 3 routes x (401, 404, 429) at most
}

// Issue 27, finding 8: settings that made every later inspection fail were stored with 200; and
// finding 3 in part: a file:// base_url made every error quote a server file to any reader.
TEST_P(Api, ProductSettingsAreCheckedWhenWritten) {
  Harness h;
  auto admin = h.Client(h.admin);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"name":"p","settings":{"threshold":-1}})", "settings.threshold"},
      {R"({"name":"p","settings":{"threshold":0}})", "settings.threshold"},
      {R"({"name":"p","settings":{"threshold":"abc"}})", "settings.threshold"},
      {R"({"name":"p","settings":{"threshold":5e-324}})", "settings.threshold"},
      {R"({"name":"p","settings":{"threshold_sigmas":-1}})", "settings.threshold_sigmas"},
      {R"({"name":"p","settings":{"threshold_sigmas":1e308}})", "settings.threshold_sigmas"},
      {R"({"name":"p","engine":"cascade","settings":{"low":2,"high":1}})", "settings.low must be below"},
      {R"({"name":"p","engine":"vlm","settings":{"model_references":0}})", "settings.model_references"},
      {R"({"name":"p","engine":"vlm","settings":{"model_references":-5}})", "settings.model_references"},
      {R"({"name":"p","engine":"vlm","settings":{"model_references":1000000000}})", "settings.model_references"},
      {R"({"name":"p","engine":"vlm","settings":{"provider":"evil"}})", "settings.provider"},
      {R"({"name":"p","engine":"vlm","settings":{"box_format":"x"}})", "settings.box_format"},
      {R"({"name":"p","engine":"vlm","settings":{"base_url":"file:///etc/passwd#"}})", "settings.base_url"},
      {R"({"name":"p","settings":{"provider":"openai"}})", "does not apply to the patch engine"},
      {R"({"name":"p","settings":{"colour":"blue"}})", "settings.colour is not a setting"},
  };
  for (const auto& [body, says] : bad) {
    auto r = admin.Post("/v1/products", body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body;
    EXPECT_NE(r->body.find(says), std::string::npos) << body << " -> " << r->body;
  }
  EXPECT_EQ(admin.Get("/v1/products/p")->status, 404) << "nothing refused was stored";
  auto good = admin.Post("/v1/products", R"({"name":"p","engine":"cascade","settings":{"threshold_sigmas":1.5,"low":0.5,"high":2,"provider":"openai","model":"m","base_url":"https://models.example.com/v1","model_references":4,"explain":"nok"}})",
                         "application/json");
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status, 201) << good->body;
}

// Issue 10, finding 1: metadata or settings nested 100000 deep crashed the server (stack).
// Issue 27: the settings' schema is written once (src/server/product_settings.cc) and the
// description repeats it: the check and web/openapi.json cannot drift apart.
TEST(ProductSettings, SchemaIsTheDescriptions) {
  std::ifstream in(testing::SourceDir() / "web/openapi.json");
  const auto described = nlohmann::json::parse(in)["components"]["schemas"]["ProductInput"]["properties"]["settings"];
  EXPECT_EQ(described.value("additionalProperties", true), false) << "unknown settings are refused";
  const nlohmann::json rules = ProductSettingRules();
  for (const auto& [key, schema] : rules.items()) {
    ASSERT_TRUE(described["properties"].contains(key)) << key << " is not described; add: " << schema.dump();
    auto d = described["properties"][key];
    d.erase("description");
    EXPECT_EQ(d, schema) << key << ": the description says " << d.dump() << ", the check " << schema.dump();
  }
  // And every described setting is checked, here or beside it in the API.
  for (const auto& [key, schema] : described["properties"].items()) {
    const bool checked = rules.contains(key) ||
                         std::set<std::string>{"line_window", "foreground", "rotations", "backbone", "naming", "auto_references", "mqtt"}.count(key);
    EXPECT_TRUE(checked) << key;
  }
}

TEST_P(Api, DeeplyNestedJsonIsRefusedNotACrash) {
  Harness h;
  h.Product("brush");
  const std::string deep = "{\"m\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  httplib::MultipartFormDataItems items = {{"image", Png(false), "part.png", "image/png"}, {"product", "brush", "", ""},
                                           {"metadata", deep, "", ""}};
  auto r = h.Client(h.writer).Post("/v1/inspections", items);
  ASSERT_TRUE(r) << "the server must answer, not die";
  EXPECT_EQ(r->status, 413) << r->body;  // 200 KB: over the metadata size limit first
  items[2].content = std::string(5000, '[') + std::string(5000, ']');  // 10 KB, 5000 deep
  r = h.Client(h.writer).Post("/v1/inspections", items);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_NE(r->body.find("nests deeper than 16"), std::string::npos) << r->body;
  nlohmann::json upload = {{"product", "brush"}, {"image", B64(Png(false))}};
  std::string body = upload.dump();
  body.insert(body.size() - 1, ",\"metadata\":" + std::string(100000, '[') + std::string(100000, ']'));
  r = h.Client(h.writer).Post("/v1/inspections", body, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  r = h.Client(h.admin).Post("/v1/products", "{\"name\":\"x\",\"settings\":" + std::string(100000, '{'), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413) << r->body;
  r = h.Client(h.admin).Post("/v1/products", "{\"name\":\"x\",\"settings\":" + std::string(30000, '{'), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  // Metadata is small: 20 KB of it is too large, 17 levels too deep.
  items[2].content = nlohmann::json({{"note", std::string(20000, 'x')}}).dump();
  r = h.Client(h.writer).Post("/v1/inspections", items);
  EXPECT_EQ(r->status, 413) << r->body;
  items[2].content = std::string(17, '[') + std::string(17, ']');
  EXPECT_EQ(h.Client(h.writer).Post("/v1/inspections", items)->status, 400);
  nlohmann::json settings = {{"threshold_sigmas", 2}, {"notes", std::string(20000, 'x')}};
  r = h.Client(h.admin).Post("/v1/products", nlohmann::json({{"name", "brush"}, {"settings", settings}}).dump(), "application/json");
  EXPECT_EQ(r->status, 413) << r->body;
  // Still serving, and nothing refused was stored.
  EXPECT_EQ(h.Client("").Get("/healthz")->status, 200);
  EXPECT_EQ(nlohmann::json::parse(h.Client(h.reader).Get("/v1/inspections")->body)["items"].size(), 0u);
  auto ok = h.Upload(h.writer, "brush", Png(false), true);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

// Issue 10, finding 5: fields of the wrong JSON type answered 500 with an empty body.
TEST_P(Api, WrongFieldTypesAnswer400WithAMessage) {
  Harness h;
  h.Product("brush");
  for (const char* body : {R"({"name":5})", R"({"name":"brush","engine":5})", R"({"name":"brush","webhook_url":5})",
                           R"({"name":"brush","webhook_secret":[1]})", R"({"name":"brush","settings":7})"}) {
    auto r = h.Client(h.admin).Post("/v1/products", body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body << " -> " << r->body;
    EXPECT_TRUE(nlohmann::json::parse(r->body)["error"]["message"].is_string()) << r->body;
  }
  auto up = h.Upload(h.writer, "brush", Png(true), true);
  ASSERT_TRUE(up && up->status == 200);
  const std::string id = nlohmann::json::parse(up->body)["id"];
  for (const char* body : {R"({"verdict":"OK","comment":5})", R"({"verdict":"OK","reviewer":{"a":1}})", R"({"verdict":5})"}) {
    auto r = h.Client(h.writer).Post(("/v1/inspections/" + id + "/review").c_str(), body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body << " -> " << r->body;
    EXPECT_FALSE(r->body.empty());
  }
  nlohmann::json upload = {{"product", "brush"}, {"image", B64(Png(false))}, {"filename", 5}};
  auto r = h.Client(h.writer).Post("/v1/inspections", upload.dump(), "application/json");
  EXPECT_EQ(r->status, 400) << r->body;
  // Issue 27, finding 15: {"product": 5} was a 404 "no product 5".
  for (const char* field : {"product", "batch", "part_id", "station"}) {
    nlohmann::json typed = {{"product", "brush"}, {"image", B64(Png(false))}};
    typed[field] = 5;
    r = h.Client(h.writer).Post("/v1/inspections", typed.dump(), "application/json");
    EXPECT_EQ(r->status, 400) << field << ": " << r->body;
    EXPECT_NE(r->body.find(std::string("'") + field + "' must be a string"), std::string::npos) << r->body;
  }
  // Issue 10, finding 7: a truncated JPEG upload is refused with 422 and not stored.
  std::vector<uint8_t> jpg;
  cv::Mat m(64, 64, CV_8UC3, cv::Scalar(60, 70, 80));
  cv::imencode(".jpg", m, jpg);
  r = h.Client(h.writer).Post("/v1/inspections?product=brush", std::string(jpg.begin(), jpg.begin() + jpg.size() * 2 / 3), "image/jpeg");
  EXPECT_EQ(r->status, 422) << r->body;
  EXPECT_EQ(nlohmann::json::parse(h.Client(h.reader).Get("/v1/inspections")->body)["items"].size(), 1u);
  // The product is unchanged by the refused updates.
  auto p = nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush")->body);
  EXPECT_EQ(p["engine"], "patch");
}

// Issue 10, finding 2: two services on one data folder both started, and the second requeued the
// first one's running job (processed twice, two webhooks).
TEST_P(Api, ASecondServiceOnTheSameDataFolderIsRefused) {
  Harness h;
  ServiceConfig c;
  c.data_dir = h.dir / "data";
  c.make_engine = [](const zeroqc::Product&, const std::vector<fs::path>&) -> StatusOr<std::unique_ptr<Engine>> {
    return InvalidArgument("unused");
  };
  auto second = Service::Start(c);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("another zeroqc serve (pid " + std::to_string(getpid()) + ")"), std::string::npos)
      << second.status().message();
  EXPECT_EQ(h.Client("").Get("/healthz")->status, 200) << "the first one keeps serving";
  // Once the first stops, the folder is free again.
  h.api.reset();
  h.svc.reset();
  auto third = Service::Start(c);
  EXPECT_TRUE(third.ok()) << third.status().message();
}

TEST(Store, BlobNamesCannotEscape) {
  BlobStore b(testing::TempDir());
  EXPECT_TRUE(b.PathOf("../../etc/passwd").empty());
  EXPECT_TRUE(b.PathOf(std::string(64, 'a') + "./x").empty());
  EXPECT_TRUE(b.PathOf(std::string(64, 'A') + ".png").empty());
  auto name = b.Put("hello", "png");
  ASSERT_TRUE(name.ok());
  EXPECT_EQ(b.PathOf(*name).filename(), *name);
  EXPECT_EQ(*b.Put("hello", "png"), *name);
  EXPECT_FALSE(b.Put("x", "p/g").ok());
}

// Issue 14: web/openapi.json describes exactly the routes the server registers (both ways), and
// is served as it is in the repository.
TEST_P(Api, OpenApiDescribesEveryRouteAndIsServedAsIs) {
  Harness h;
  auto web = testing::SourceDir() / "web";
  auto a = ApiServer::Start(*h.svc, "127.0.0.1", 0, web);
  ASSERT_TRUE(a.ok()) << a.status().message();
  std::ifstream in(web / "openapi.json");
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  const auto doc = nlohmann::json::parse(text);
  EXPECT_EQ(doc["openapi"].get<std::string>().substr(0, 2), "3.");
  std::set<std::pair<std::string, std::string>> described, served((*a)->routes().begin(), (*a)->routes().end());
  for (const auto& [path, item] : doc["paths"].items())
    for (const auto& [method, op] : item.items()) {
      std::string m = method;
      std::transform(m.begin(), m.end(), m.begin(), ::toupper);
      described.insert({m, path});
      EXPECT_TRUE(op.contains("responses") && op.contains("operationId")) << m << " " << path;
    }
  EXPECT_GE(served.size(), 20u);
  for (const auto& r : served) EXPECT_TRUE(described.count(r)) << r.first << " " << r.second << " is served but not described";
  for (const auto& d : described) EXPECT_TRUE(served.count(d)) << d.first << " " << d.second << " is described but not served";

  httplib::Client c("127.0.0.1", (*a)->port());
  auto r = c.Get("/openapi.json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(r->body, text) << "served as it is in the repository";
}

// Issue 14: --log-format json gives one JSON object per line with time, level, event and the
// inspection's id, product and duration; an engine build is logged with its duration and counted
// in /metrics.
TEST_P(Api, JsonLogsAndEngineBuildsAreLoggedAndCounted) {
  // Not in TempDir(): the harness empties that.
  const auto path = fs::temp_directory_path() / ("zeroqc-json-log-" + std::to_string(getpid()) + ".jsonl");
  std::FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  log::Configure(log::Format::kJson, f);
  std::string id;
  {
    Harness h;
    h.Product("bolt");
    auto r = h.Upload(h.writer, "bolt", Png(true), true);
    ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
    id = nlohmann::json::parse(r->body)["id"];
    auto m = h.Client(h.reader).Get("/metrics");
    ASSERT_TRUE(m && m->status == 200);
    EXPECT_NE(m->body.find("zeroqc_engine_build_duration_seconds_count 1\n"), std::string::npos) << m->body;
    EXPECT_NE(m->body.find("zeroqc_engine_build_duration_seconds_bucket{le=\"300\"} 1\n"), std::string::npos);
  }
  log::Configure(log::Format::kText, stderr);
  std::fclose(f);
  std::ifstream in(path);
  fs::remove(path);
  std::map<std::string, nlohmann::json> events;
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << "not one JSON object: " << line;
    for (const char* k : {"time", "level", "event", "message"}) EXPECT_TRUE(j.contains(k)) << k << " missing: " << line;
    EXPECT_TRUE(std::regex_match(j["time"].get<std::string>(), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"))) << line;
    events[j["event"]] = j;
  }
  EXPECT_GE(lines, 3);
  ASSERT_TRUE(events.count("engine_build_started") && events.count("engine_built") && events.count("inspection_finished"));
  EXPECT_EQ(events["engine_built"]["product"], "bolt");
  EXPECT_EQ(events["engine_built"]["references"], 1);
  EXPECT_GE(events["engine_built"]["duration_ms"].get<double>(), 0.0);
  const auto& done = events["inspection_finished"];
  EXPECT_EQ(done["level"], "info");
  EXPECT_EQ(done["inspection"], id);
  EXPECT_EQ(done["product"], "bolt");
  EXPECT_EQ(done["verdict"], "NOK");
  EXPECT_GT(done["duration_ms"].get<double>(), 0.0);
}

}  // namespace
}  // namespace zeroqc

namespace zeroqc {
namespace {

// PostgreSQL restarts (an upgrade, a failover) under a running service: the service reconnects by
// itself, keys still work and inspections go on; nothing accepted before is lost.
TEST(ApiPostgres, TheServiceRidesOutADatabaseRestart) {
  const auto dir = testing::TempDir();
  const std::string script = (testing::SourceDir() / "tests/servers/postgres.sh").string(), url_file = (dir / "pg.url").string();
  ASSERT_EQ(std::system((script + " start " + url_file).c_str()), 0);
  struct Stop {
    std::string cmd;
    ~Stop() { (void)!std::system(cmd.c_str()); }
  } stop{script + " stop " + url_file};
  std::string url;
  std::ifstream(url_file) >> url;
  Harness h([&](ServiceConfig& c) { c.db_url = url; }, true, dir);
  h.Product("brush");
  auto r = h.Upload(h.writer, "brush", Png(true), true);
  ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
  const std::string before = nlohmann::json::parse(r->body)["id"];

  ASSERT_EQ(std::system((script + " restart " + url_file).c_str()), 0);
  r = h.Upload(h.writer, "brush", Png(false), true);
  ASSERT_TRUE(r) << "no answer";
  EXPECT_EQ(r->status, 200) << "the first request after the restart: " << r->body;
  EXPECT_EQ(nlohmann::json::parse(r->body)["verdict"], "OK");
  auto old = h.Client(h.reader).Get(("/v1/inspections/" + before).c_str());
  ASSERT_TRUE(old && old->status == 200);
  EXPECT_EQ(nlohmann::json::parse(old->body)["verdict"], "NOK");

  // Issue 27, finding 13: while the database is down a valid key got 401 "unknown or revoked", then
  // 429. It is 503 with Retry-After, and never counts as a failed authentication.
  ASSERT_EQ(std::system((script + " pause " + url_file).c_str()), 0);
  for (int i = 0; i < 15; ++i) {
    auto down = h.Client(h.reader).Get("/v1/products");
    ASSERT_TRUE(down) << "no answer";
    EXPECT_EQ(down->status, 503) << i << ": " << down->body;
    EXPECT_TRUE(down->has_header("Retry-After"));
  }
  ASSERT_EQ(std::system((script + " resume " + url_file).c_str()), 0);
  auto back = h.Client(h.reader).Get("/v1/products");
  ASSERT_TRUE(back) << "no answer";
  EXPECT_EQ(back->status, 200) << "after the database is back: " << back->body;
}

}  // namespace
}  // namespace zeroqc
