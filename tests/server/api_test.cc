// The HTTP API over real HTTP on 127.0.0.1, with an in-process service and a fake engine whose
// verdicts are known (a bright spot is a defect): happy paths, auth, scopes, rate limits, bad
// uploads, back-pressure, restart with pending work, webhooks, hot folder, health and metrics.
#include "server/api.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>

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

#include "core/base64.h"
#include "server/log.h"
#include "server/mqtt.h"
#include "server/webhook_target.h"
#include "servers/servers.h"
#include "test_support.h"

namespace zeroqc {
namespace {

namespace fs = std::filesystem;

// Bright spot = NOK. Blocks while `gate` is closed (to fill the queue on purpose).
class SpotEngine : public Engine {
 public:
  explicit SpotEngine(std::shared_future<void> gate) : gate_(std::move(gate)) {}
  std::string name() const override { return "spot"; }
  Inspection Inspect(const Image& img) override {
    gate_.wait();
    Inspection out;
    out.result = NewResult(img);
    cv::Mat gray;
    cv::cvtColor(img.bgr, gray, cv::COLOR_BGR2GRAY);
    double hi;
    cv::Point at;
    cv::minMaxLoc(gray, nullptr, &hi, nullptr, &at);
    out.result.threshold = 0.5;
    out.result.score = hi / 255;
    out.result.verdict = out.result.score > 0.5 ? "NOK" : "OK";
    if (out.result.verdict == "NOK")
      out.result.objects.push_back({"spot", "white", "NOK", "bright", {at.x, at.y, at.x + 8, at.y + 8}, hi / 255});
    return out;
  }

 private:
  std::shared_future<void> gate_;
};

std::string B64(const std::string& bytes) {
  return Base64Encode(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

std::string Png(bool spot, int size = 64) {
  cv::Mat m(size, size, CV_8UC3, cv::Scalar(60, 70, 80));
  if (spot) cv::rectangle(m, {20, 20}, {27, 27}, cv::Scalar::all(255), cv::FILLED);
  std::vector<uint8_t> buf;
  cv::imencode(".png", m, buf);
  return std::string(buf.begin(), buf.end());
}

// Every API test runs against both stores: SQLite (the embedded default) and PostgreSQL.
class Api : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Store, Api, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// The running test's database URL: empty for SQLite, one PostgreSQL database per test (a test
// that restarts the service finds its data again).
std::string TestDbUrl() {
  auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  if (!std::string(info->name()).ends_with("/postgres")) return "";
  static std::map<std::string, std::string> urls;
  auto& url = urls[std::string(info->test_suite_name()) + "." + info->name()];
  if (url.empty()) url = testing::NewPostgresDatabase();
  return url;
}

struct Harness {
  fs::path dir;
  std::promise<void> open;
  std::shared_future<void> gate = open.get_future().share();
  std::unique_ptr<Service> svc;
  std::unique_ptr<ApiServer> api;
  std::string admin, writer, reader;
  std::string poller;  // WaitDone's own key: its polling must not spend the rate budget of the keys a test checks

  // `existing`: a folder prepared by the test (else a fresh one).
  explicit Harness(std::function<void(ServiceConfig&)> tweak = nullptr, bool gate_open = true, fs::path existing = {})
      : dir(existing.empty() ? testing::TempDir() : existing) {
    if (gate_open) open.set_value();
    Start(tweak);
    admin = *svc->store().CreateKey(Scope::kAdmin, "admin");
    writer = *svc->store().CreateKey(Scope::kWrite, "line 3");
    reader = *svc->store().CreateKey(Scope::kRead, "dashboard");
    poller = *svc->store().CreateKey(Scope::kRead, "poller");
  }
  void Start(std::function<void(ServiceConfig&)> tweak) {
    ServiceConfig c;
    c.data_dir = dir / "data";
    c.db_url = TestDbUrl();
    c.webhook_backoff_ms = 20;
    c.make_engine = [g = gate](const zeroqc::Product&, const std::vector<fs::path>& refs) -> StatusOr<std::unique_ptr<Engine>> {
      if (refs.empty()) return InvalidArgument("no refs");
      return std::unique_ptr<Engine>(std::make_unique<SpotEngine>(g));
    };
    if (tweak) tweak(c);
    auto s = Service::Start(c);
    EXPECT_TRUE(s.ok()) << s.status().message();
    svc = std::move(*s);
    auto a = ApiServer::Start(*svc, "127.0.0.1", 0, "");
    EXPECT_TRUE(a.ok()) << a.status().message();
    api = std::move(*a);
  }
  ~Harness() {
    try {
      open.set_value();
    } catch (const std::future_error&) {
    }
    api.reset();
    svc.reset();
  }
  httplib::Client Client(const std::string& key) {
    httplib::Client c("127.0.0.1", api->port());
    c.set_read_timeout(20, 0);
    if (!key.empty()) c.set_bearer_token_auth(key.c_str());
    return c;
  }
  void Product(const std::string& name, nlohmann::json extra = nlohmann::json::object()) {
    extra["name"] = name;
    auto r = Client(admin).Post("/v1/products", extra.dump(), "application/json");
    ASSERT_TRUE(r && (r->status == 201 || r->status == 200)) << (r ? r->body : "no answer");
    httplib::MultipartFormDataItems items = {{"image", Png(false), "good.png", "image/png"}};
    r = Client(admin).Post(("/v1/products/" + name + "/references").c_str(), items);
    ASSERT_TRUE(r && r->status == 201) << (r ? r->body : "no answer");
  }
  httplib::Result Upload(const std::string& key, const std::string& product, const std::string& bytes, bool wait,
                         const std::string& extra_query = "") {
    httplib::MultipartFormDataItems items = {{"image", bytes, "part.png", "image/png"}, {"product", product, "", ""},
                                             {"batch", "B-17", "", ""}, {"metadata", R"({"shift":"night"})", "", ""}};
    return Client(key).Post(("/v1/inspections" + std::string(wait ? "?wait=true" : "?") + extra_query).c_str(), items);
  }
  nlohmann::json WaitDone(const std::string& id) {
    for (int i = 0; i < 400; ++i) {
      auto r = Client(poller).Get(("/v1/inspections/" + id).c_str());
      if (r && r->status == 200) {
        auto j = nlohmann::json::parse(r->body);
        if (j["status"] == "done" || j["status"] == "failed") return j;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ADD_FAILURE() << id << " never finished";
    return {};
  }
};

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
  // At most one taken by the (blocked) worker plus five queued.
  EXPECT_LE(accepted, 6);
  EXPECT_GE(accepted, 5);
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

// Issue 10, finding 7: a webhook could point at 169.254.169.254 or loopback.
TEST_P(Api, WebhooksToPrivateAddressesAreRefused) {
  Harness h;
  for (const char* url : {"http://169.254.169.254/latest/meta-data", "http://127.0.0.1:9/x", "http://localhost/x",
                          "http://10.1.2.3/x", "http://192.168.0.1/x", "http://[::1]:8080/x", "http://[fe80::1]/x",
                          "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x", "ftp://example.com/x", "http:///x"}) {
    auto r = h.Client(h.admin).Post("/v1/products", nlohmann::json({{"name", "p"}, {"webhook_url", url}}).dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << url << " -> " << r->body;
  }
  auto r = h.Client(h.admin).Post("/v1/products", R"({"name":"p","webhook_url":"https://203.0.113.7/hook"})", "application/json");
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_FALSE(IsPrivateAddress("8.8.8.8"));
  EXPECT_FALSE(IsPrivateAddress("2001:db8::1"));
  EXPECT_TRUE(IsPrivateAddress("172.31.255.255"));
  EXPECT_FALSE(IsPrivateAddress("172.32.0.1"));
  EXPECT_TRUE(IsPrivateAddress("fd00::1"));
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

TEST_P(Api, WebhooksAreSignedRetriedAndDeadLettered) {
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> got;  // body, signature
  int calls = 0;
  httplib::Server hook;
  hook.Post("/flaky", [&](const httplib::Request& q, httplib::Response& res) {
    std::lock_guard lock(mu);
    if (++calls <= 2) return void(res.status = 500);
    got.emplace_back(q.body, q.get_header_value("X-Zeroqc-Signature"));
  });
  hook.Post("/down", [](const httplib::Request&, httplib::Response& res) { res.status = 503; });
  int port = hook.bind_to_any_port("127.0.0.1");
  std::thread t([&] { hook.listen_after_bind(); });
  Harness h([](ServiceConfig& c) {
    c.webhook_attempts = 3;
    c.allow_private_webhooks = true;  // the receiver is on 127.0.0.1
  });
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  h.Product("brush", {{"webhook_url", base + "/flaky"}, {"webhook_secret", "s3cret"}});
  h.Product("plate", {{"webhook_url", base + "/down"}, {"webhook_secret", "x"}});
  auto id = nlohmann::json::parse(h.Upload(h.writer, "brush", Png(true), true)->body)["id"].get<std::string>();
  auto id2 = nlohmann::json::parse(h.Upload(h.writer, "plate", Png(true), true)->body)["id"].get<std::string>();
  nlohmann::json dead;
  for (int i = 0; i < 200; ++i) {
    dead = nlohmann::json::parse(h.Client(h.admin).Get("/v1/webhooks/dead-letters")->body)["items"];
    std::lock_guard lock(mu);
    if (!got.empty() && !dead.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  hook.stop();
  t.join();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(got[0].second, "sha256=" + WebhookSignature("s3cret", got[0].first));
  auto body = nlohmann::json::parse(got[0].first);
  EXPECT_EQ(body["event"], "inspection.finished");
  EXPECT_EQ(body["inspection"]["id"], id);
  EXPECT_EQ(body["inspection"]["verdict"], "NOK");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0]["inspection"], id2);
  EXPECT_EQ(dead[0]["attempts"], 3);
  EXPECT_EQ(dead[0]["last_error"], "HTTP 503");
}

TEST_P(Api, HotFolderIngestsOnceThenMoves) {
  auto drop = testing::TempDir() / "drop";
  fs::create_directories(drop);
  {  // the product must exist before the service watches the folder
    auto store = Store::Open(drop.parent_path() / "data", TestDbUrl());
    ASSERT_TRUE((*store)->PutProduct({"brush", "patch", nlohmann::json::object(), "", ""}).ok());
    ASSERT_TRUE((*store)->AddReference("brush", *(*store)->blobs().Put(Png(false), "png"), "good.png").ok());
  }
  auto old = [](const fs::path& p) {  // written a while ago: complete
    utimbuf t{time(nullptr) - 5, time(nullptr) - 5};
    utime(p.c_str(), &t);
  };
  std::ofstream(drop / "cam1_0001.png", std::ios::binary) << Png(true);
  std::ofstream(drop / "cam1_0002.png", std::ios::binary) << "garbage";
  old(drop / "cam1_0001.png");
  old(drop / "cam1_0002.png");
  Harness h(
      [&](ServiceConfig& c) {
        c.hot_folder = drop;
        c.hot_folder_product = "brush";
      },
      true, drop.parent_path());
  for (int i = 0; i < 200 && !(fs::exists(drop / "done/cam1_0001.png") && fs::exists(drop / "failed/cam1_0002.png")); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  EXPECT_TRUE(fs::exists(drop / "done/cam1_0001.png"));
  EXPECT_TRUE(fs::exists(drop / "failed/cam1_0002.png"));
  EXPECT_TRUE(fs::exists(drop / "failed/cam1_0002.png.error.txt"));
  EXPECT_FALSE(fs::exists(drop / "cam1_0001.png"));
  auto list = nlohmann::json::parse(h.Client(h.reader).Get("/v1/inspections?product=brush")->body)["items"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["image_name"], "cam1_0001.png");
  EXPECT_EQ(h.WaitDone(list[0]["id"])["verdict"], "NOK");
}

// Issue 10, findings 3 and 7: a file that cannot be moved to done/ was re-submitted forever; a
// half-written file was inspected or refused for good.
TEST_P(Api, HotFolderNeverResubmitsAndWaitsForWholeFiles) {
  auto drop = testing::TempDir() / "drop";
  fs::create_directories(drop / "done" / "blocked.png");  // a folder where the file should go
  {
    auto store = Store::Open(drop.parent_path() / "data", TestDbUrl());
    ASSERT_TRUE((*store)->PutProduct({"brush", "patch", nlohmann::json::object(), "", ""}).ok());
    ASSERT_TRUE((*store)->AddReference("brush", *(*store)->blobs().Put(Png(false), "png"), "good.png").ok());
  }
  const std::string whole = Png(true);
  std::ofstream(drop / "blocked.png", std::ios::binary) << whole;
  std::ofstream(drop / "slow.png", std::ios::binary) << whole.substr(0, whole.size() / 2);  // the writer pauses
  Harness h(
      [&](ServiceConfig& c) {
        c.hot_folder = drop;
        c.hot_folder_product = "brush";
      },
      true, drop.parent_path());
  for (int i = 0; i < 200 && !fs::exists(drop / "failed/blocked.png"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  EXPECT_TRUE(fs::exists(drop / "failed/blocked.png"));
  std::ifstream why(drop / "failed/blocked.png.error.txt");
  std::string reason((std::istreambuf_iterator<char>(why)), {});
  EXPECT_NE(reason.find("could not be moved to done/"), std::string::npos) << reason;
  // The half-written file waits; 3 s later its writer finishes it, and it is inspected once.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_TRUE(fs::exists(drop / "slow.png")) << "an incomplete image is neither inspected nor failed";
  std::ofstream(drop / "slow.png", std::ios::binary | std::ios::app) << whole.substr(whole.size() / 2);
  for (int i = 0; i < 200 && !fs::exists(drop / "done/slow.png"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  EXPECT_TRUE(fs::exists(drop / "done/slow.png"));
  std::this_thread::sleep_for(std::chrono::seconds(1));  // time for any (wrong) second submission
  auto list = nlohmann::json::parse(h.Client(h.reader).Get("/v1/inspections?product=brush")->body)["items"];
  ASSERT_EQ(list.size(), 2u) << list.dump();
  std::set<std::string> names;
  for (const auto& i : list) names.insert(i["image_name"].get<std::string>());
  EXPECT_EQ(names, (std::set<std::string>{"blocked.png", "slow.png"}));
}

TEST_P(Api, HealthReadyAndMetrics) {
  Harness h;
  h.Product("brush");
  ASSERT_EQ(h.Upload(h.writer, "brush", Png(true), true)->status, 200);
  auto c = h.Client("");
  EXPECT_EQ(c.Get("/healthz")->status, 200);
  EXPECT_EQ(c.Get("/readyz")->status, 200);
  auto m = c.Get("/metrics")->body;
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

// A test's MQTT client (MQTT 5): collects what arrives on its subscriptions.
class MqttClient {
 public:
  struct Message {
    std::string topic, payload;
    bool retained;
  };
  MqttClient(int port, const std::string& subscription) {
    static std::once_flag init;
    std::call_once(init, [] { mosquitto_lib_init(); });
    m_ = mosquitto_new(nullptr, true, this);
    mosquitto_int_option(m_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_message_v5_callback_set(m_, [](mosquitto*, void* self, const mosquitto_message* msg, const mosquitto_property*) {
      auto* me = static_cast<MqttClient*>(self);
      std::lock_guard lock(me->mu_);
      me->got_.push_back({msg->topic, std::string(static_cast<const char*>(msg->payload), size_t(msg->payloadlen)), msg->retain});
    });
    EXPECT_EQ(mosquitto_connect(m_, "127.0.0.1", port, 30), MOSQ_ERR_SUCCESS);
    if (!subscription.empty()) EXPECT_EQ(mosquitto_subscribe(m_, nullptr, subscription.c_str(), 1), MOSQ_ERR_SUCCESS);
    mosquitto_loop_start(m_);
  }
  ~MqttClient() {
    mosquitto_disconnect(m_);
    mosquitto_loop_stop(m_, false);
    mosquitto_destroy(m_);
  }
  void Publish(const std::string& topic, const std::string& payload, const std::map<std::string, std::string>& user = {}) {
    mosquitto_property* props = nullptr;
    for (const auto& [k, v] : user) mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, k.c_str(), v.c_str());
    EXPECT_EQ(mosquitto_publish_v5(m_, nullptr, topic.c_str(), int(payload.size()), payload.data(), 1, false, props), MOSQ_ERR_SUCCESS);
    mosquitto_property_free_all(&props);
  }
  // The first message on `topic` (waits up to 20 s).
  std::optional<Message> On(const std::string& topic) {
    for (int i = 0; i < 400; ++i) {
      {
        std::lock_guard lock(mu_);
        for (const auto& m : got_)
          if (m.topic == topic) return m;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return std::nullopt;
  }

 private:
  mosquitto* m_;
  std::mutex mu_;
  std::vector<Message> got_;
};

// Issue 12: results on the product's topic (QoS 1, retained per station), images from its input
// topic, refused images answered on <topic>/rejected; a real mosquitto broker.
TEST_P(Api, MqttPublishesResultsAndTakesImages) {
  testing::Mosquitto broker(testing::TempDir());
  Harness h;
  const nlohmann::json product = {{"name", "brush"},
                                  {"settings", {{"mqtt", {{"topic", "plant/l3/brush/results"}, {"input_topic", "plant/l3/brush/images"}}}}}};
  auto bad = product;
  bad["settings"]["mqtt"]["input_topic"] = "plant/l3/brush/results/in";
  auto r = h.Client(h.admin).Post("/v1/products", bad.dump(), "application/json");
  ASSERT_EQ(r->status, 400) << "an input topic under the result topic would loop";
  bad["settings"]["mqtt"] = {{"topic", "plant/+/x"}};
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", bad.dump(), "application/json")->status, 400) << "no wildcards";
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", product.dump(), "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", Png(false), "good.png", "image/png"}};
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products/brush/references", ref)->status, 201);

  auto bridge = MqttBridge::Start(*h.svc, {broker.url(), "zeroqc-test"});
  ASSERT_TRUE(bridge.ok()) << bridge.status().message();
  MqttClient line(broker.port(), "plant/l3/brush/results/#");

  // An HTTP upload's result is published on <topic>/<station>.
  httplib::MultipartFormDataItems items = {{"image", Png(true), "p.png", "image/png"}, {"product", "brush", "", ""}, {"station", "cam-1", "", ""}};
  r = h.Client(h.writer).Post("/v1/inspections?wait=true", items);
  ASSERT_EQ(r->status, 200) << r->body;
  auto m = line.On("plant/l3/brush/results/cam-1");
  ASSERT_TRUE(m) << "no result published";
  auto j = nlohmann::json::parse(m->payload);
  EXPECT_EQ(j["verdict"], "NOK");
  EXPECT_EQ(j["id"], nlohmann::json::parse(r->body)["id"]);
  {  // retained: a dashboard subscribing later gets the station's last result at once
    MqttClient later(broker.port(), "plant/l3/brush/results/cam-1");
    auto kept = later.On("plant/l3/brush/results/cam-1");
    ASSERT_TRUE(kept);
    EXPECT_TRUE(kept->retained);
    EXPECT_EQ(nlohmann::json::parse(kept->payload)["id"], j["id"]);
  }

  // An image published on the input topic is inspected; its station is the level below, batch
  // and part id come from user properties, other properties go into the metadata.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // the bridge subscribes within 2 s of a product change
  line.Publish("plant/l3/brush/images/cam-2", Png(false), {{"batch", "B-9"}, {"part_id", "P-1"}, {"shift", "night"}});
  m = line.On("plant/l3/brush/results/cam-2");
  ASSERT_TRUE(m) << "an image on the input topic was not inspected";
  j = nlohmann::json::parse(m->payload);
  EXPECT_EQ(j["verdict"], "OK");
  EXPECT_EQ(j["batch"], "B-9");
  EXPECT_EQ(j["part_id"], "P-1");
  EXPECT_EQ(j["station"], "cam-2");
  EXPECT_EQ(j["metadata"]["source"], "mqtt");
  EXPECT_EQ(j["metadata"]["shift"], "night");
  auto stored = h.Client(h.reader).Get(("/v1/inspections/" + j["id"].get<std::string>()).c_str());
  ASSERT_EQ(stored->status, 200) << "it is an inspection like any other";

  // Bytes that are no image are refused, said on <topic>/rejected, and nothing is queued.
  const auto before = nlohmann::json::parse(h.Client(h.reader).Get("/v1/inspections?limit=100")->body)["items"].size();
  line.Publish("plant/l3/brush/images/cam-2", "not an image");
  m = line.On("plant/l3/brush/results/rejected");
  ASSERT_TRUE(m);
  j = nlohmann::json::parse(m->payload);
  EXPECT_EQ(j["code"], "unsupported_media") << j.dump();
  EXPECT_EQ(j["status"], 415);
  EXPECT_EQ(j["topic"], "plant/l3/brush/images/cam-2");
  EXPECT_EQ(nlohmann::json::parse(h.Client(h.reader).Get("/v1/inspections?limit=100")->body)["items"].size(), before);
}

TEST(Mqtt, AnUnreachableBrokerOrABadUrlIsAClearErrorAtStart) {
  ServiceConfig c;
  c.data_dir = testing::TempDir() / "data";
  c.make_engine = [](const zeroqc::Product&, const std::vector<fs::path>&) -> StatusOr<std::unique_ptr<Engine>> {
    return InvalidArgument("unused");
  };
  auto svc = Service::Start(c);
  ASSERT_TRUE(svc.ok());
  auto bad = MqttBridge::Start(**svc, {"http://127.0.0.1:1883", "x"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("mqtt://"), std::string::npos) << bad.status().message();
  auto down = MqttBridge::Start(**svc, {"mqtt://127.0.0.1:" + std::to_string(testing::FreePort()), "x"});
  ASSERT_FALSE(down.ok());
  EXPECT_NE(down.status().message().find("cannot connect"), std::string::npos) << down.status().message();
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

namespace zeroqc {
namespace {

// An engine that knows its references by sight: OK when the image is (nearly) one of them, NOK
// otherwise. Learns incrementally (WithReference), so the service's review path is exercised.
class LookupEngine : public Engine {
 public:
  std::string name() const override { return "lookup"; }
  Inspection Inspect(const Image& img) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a little time, for concurrency
    Inspection out;
    out.result = NewResult(img);
    double best = 1;
    for (const auto& r : refs_)
      if (r.size() == img.bgr.size()) best = std::min(best, cv::norm(r, img.bgr, cv::NORM_L1) / (255.0 * r.total() * 3));
    out.result.threshold = 0.01;
    out.result.score = best;
    out.result.verdict = best < 0.01 ? "OK" : "NOK";
    return out;
  }
  nlohmann::json Calibration() const override { return {{"threshold", 0.01}, {"references", refs_.size()}}; }
  StatusOr<std::unique_ptr<Engine>> WithReference(const fs::path& reference) const override {
    auto e = std::make_unique<LookupEngine>(*this);
    cv::Mat m = cv::imread(reference.string(), cv::IMREAD_COLOR);
    if (m.empty()) return Corrupt("cannot read " + reference.string());
    e->refs_.push_back(m);
    ++incremental_updates;
    return std::unique_ptr<Engine>(std::move(e));
  }
  static inline std::atomic<int> incremental_updates{0};
  std::vector<cv::Mat> refs_;
};

std::string Shade(int v) {
  cv::Mat m(64, 64, CV_8UC3, cv::Scalar(v, v, v));
  std::vector<uint8_t> buf;
  cv::imencode(".png", m, buf);
  return std::string(buf.begin(), buf.end());
}

void UseLookupEngine(ServiceConfig& c) {
  c.make_engine = [](const zeroqc::Product&, const std::vector<fs::path>& refs) -> StatusOr<std::unique_ptr<Engine>> {
    auto e = std::make_unique<LookupEngine>();
    for (const auto& r : refs) e->refs_.push_back(cv::imread(r.string(), cv::IMREAD_COLOR));
    return std::unique_ptr<Engine>(std::move(e));
  };
}

// A product "brush" with one reference (shade 100) and a part of shade 150 it judged NOK.
nlohmann::json BrushPartJudgedNok(Harness& h) {
  EXPECT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"brush"})", "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", Shade(100), "good.png", "image/png"}};
  EXPECT_EQ(h.Client(h.admin).Post("/v1/products/brush/references", ref)->status, 201);
  return nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), true)->body);
}

nlohmann::json Review(Harness& h, const std::string& id, const nlohmann::json& body, int expect) {
  auto r = h.Client(h.writer).Post(("/v1/inspections/" + id + "/review").c_str(), body.dump(), "application/json");
  EXPECT_TRUE(r && r->status == expect) << (r ? std::to_string(r->status) + " " + r->body : "no answer");
  return r ? nlohmann::json::parse(r->body, nullptr, false) : nlohmann::json();
}

// Issue 27, finding 4: the same "OK, add to references" review six times, then five at once, made
// eleven copies of one image references (the threshold fell by half). One inspection is one
// reference: the repeats answer 409 and change nothing, also when they race.
TEST_P(Api, AnInspectionBecomesAReferenceOnceHoweverOftenItIsReviewed) {
  Harness h(UseLookupEngine);
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"brush"})", "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", Shade(100), "good.png", "image/png"}};
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products/brush/references", ref)->status, 201);
  auto references = [&] {
    return nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush/references")->body)["items"].size();
  };
  const nlohmann::json teach = {{"verdict", "OK"}, {"add_to_references", true}};
  const std::string first = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), true)->body)["id"];
  Review(h, first, teach, 201);
  for (int i = 0; i < 5; ++i) {
    auto again = Review(h, first, teach, 409);
    EXPECT_NE(again.dump().find("already reference"), std::string::npos) << again.dump();
  }
  EXPECT_EQ(references(), 2u);
  const std::string second = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(200), true)->body)["id"];
  std::vector<std::future<int>> racing;
  for (int i = 0; i < 5; ++i)
    racing.push_back(std::async(std::launch::async, [&] {
      auto r = h.Client(h.writer).Post(("/v1/inspections/" + second + "/review").c_str(), teach.dump(), "application/json");
      return r ? r->status : 0;
    }));
  int created = 0, conflicts = 0;
  for (auto& f : racing) {
    const int status = f.get();
    created += status == 201, conflicts += status == 409;
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(conflicts, 4);
  EXPECT_EQ(references(), 3u);
}

// Issue 11: a review that says "good part: add to references" teaches the product at once, as a
// new version; older inspections keep the version that judged them; a rollback restores the old
// references and with them the old verdicts.
TEST_P(Api, ReviewsTeachVersionsTraceAndRollbackRestores) {
  Harness h(UseLookupEngine);
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"brush"})", "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", Shade(100), "good.png", "image/png"}};
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products/brush/references", ref)->status, 201);
  const int updates_before = LookupEngine::incremental_updates;

  auto first = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), true)->body);
  ASSERT_EQ(first["verdict"], "NOK") << "a good part the references do not cover yet: a false alarm";
  const int64_t v1 = first["reference_version"];
  EXPECT_EQ(v1, 2) << "version 1 created the product, version 2 added its reference";

  // Refusals that change nothing: NOK with add_to_references, a wrong type.
  Review(h, first["id"], {{"verdict", "NOK"}, {"add_to_references", true}}, 400);
  Review(h, first["id"], {{"verdict", "OK"}, {"add_to_references", "yes"}}, 400);
  auto reviewed = Review(h, first["id"], {{"verdict", "OK"}, {"comment", "false alarm"}, {"add_to_references", true}}, 201);
  EXPECT_EQ(reviewed["final_verdict"], "OK");
  EXPECT_EQ(reviewed["added_reference"]["version"], v1 + 1);

  auto second = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), true)->body);
  EXPECT_EQ(second["verdict"], "OK") << "the same image, after the review taught it";
  EXPECT_EQ(second["reference_version"], v1 + 1);
  EXPECT_EQ(LookupEngine::incremental_updates, updates_before + 1) << "taken incrementally, not rebuilt";
  auto again = nlohmann::json::parse(h.Client(h.reader).Get(("/v1/inspections/" + first["id"].get<std::string>()).c_str())->body);
  EXPECT_EQ(again["reference_version"], v1) << "an inspection made before the change keeps its version";
  EXPECT_EQ(again["verdict"], "NOK");

  // The versions say who did what, when.
  auto versions = nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush/versions")->body);
  EXPECT_EQ(versions["current"], v1 + 1);
  ASSERT_EQ(versions["items"].size(), 3u);
  const auto& top = versions["items"][0];
  EXPECT_EQ(top["version"], v1 + 1);
  EXPECT_EQ(top["actor"], "line 3") << "the reviewing key's name";
  EXPECT_EQ(top["change"]["op"], "add_reference");
  EXPECT_EQ(top["change"]["from_inspection"], first["id"]);
  EXPECT_EQ(top["references"].size(), 2u);
  EXPECT_FALSE(top["created_at"].get<std::string>().empty());

  // Rollback (admin only) to the version before the review: the old verdict comes back.
  auto denied = h.Client(h.writer).Post(("/v1/products/brush/versions/" + std::to_string(v1) + "/rollback").c_str(), "", "application/json");
  EXPECT_EQ(denied->status, 403);
  EXPECT_EQ(h.Client(h.admin).Post("/v1/products/brush/versions/99/rollback", "", "application/json")->status, 404);
  auto rb = h.Client(h.admin).Post(("/v1/products/brush/versions/" + std::to_string(v1) + "/rollback").c_str(), "", "application/json");
  ASSERT_EQ(rb->status, 200) << rb->body;
  auto rolled = nlohmann::json::parse(rb->body);
  EXPECT_EQ(rolled["version"], v1 + 2) << "a rollback is a new version";
  EXPECT_EQ(rolled["product"]["references"].size(), 1u);
  auto third = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), true)->body);
  EXPECT_EQ(third["verdict"], "NOK") << "the rollback restores the old verdict";
  EXPECT_EQ(third["reference_version"], v1 + 2);
  versions = nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush/versions")->body);
  EXPECT_EQ(versions["items"][0]["change"]["op"], "rollback");
  EXPECT_EQ(versions["items"][0]["change"]["to"], v1);
  EXPECT_EQ(versions["items"][0]["actor"], "admin");
  // ...and rolling forward again brings the taught reference back.
  ASSERT_EQ(h.Client(h.admin).Post(("/v1/products/brush/versions/" + std::to_string(v1 + 1) + "/rollback").c_str(), "", "application/json")->status, 200);
  EXPECT_EQ(nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), true)->body)["verdict"], "OK");
}

// Inspections running while a review adds a reference see the old engine or the new one, never a
// mix: every verdict agrees with the version it reports.
TEST_P(Api, AConcurrentReviewAndInspectionNeverSeeAHalfUpdatedBank) {
  Harness h([](ServiceConfig& c) {
    UseLookupEngine(c);
    c.workers = 2;
    c.rate_per_second = 1000;
    c.burst = 1000;
  });
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"brush"})", "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", Shade(100), "good.png", "image/png"}};
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products/brush/references", ref)->status, 201);
  auto first = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), true)->body);
  const int64_t before = first["reference_version"];
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), false)->body)["id"]);
  Review(h, first["id"], {{"verdict", "OK"}, {"add_to_references", true}}, 201);
  for (int i = 0; i < 10; ++i) ids.push_back(nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), false)->body)["id"]);
  int old_seen = 0, new_seen = 0;
  for (const auto& id : ids) {
    auto j = h.WaitDone(id);
    if (j["reference_version"] == before) {
      EXPECT_EQ(j["verdict"], "NOK") << "the old version's verdict";
      ++old_seen;
    } else {
      EXPECT_EQ(j["reference_version"], before + 1);
      EXPECT_EQ(j["verdict"], "OK") << "the new version's verdict";
      ++new_seen;
    }
  }
  EXPECT_GT(new_seen, 0);
  std::printf("old version %d, new version %d\n", old_seen, new_seen);
}

// An image that no longer decodes (here: its stored file, or a worker's cached copy, damaged) cannot become a reference: the
// review is refused with the reason and nothing changes, neither the references nor the version.
TEST_P(Api, AddToReferencesRefusesAnImageThatDoesNotDecode) {
  Harness h(UseLookupEngine);
  const nlohmann::json j = BrushPartJudgedNok(h);
  ASSERT_EQ(j["verdict"], "NOK");
  const auto blob = h.svc->store().InspectionBlob(j["id"], false);
  ASSERT_TRUE(blob);
  const std::string png = Shade(150);
  std::ofstream(h.svc->store().blobs().PathOf(*blob), std::ios::binary) << png.substr(0, png.size() / 2);  // truncated
  const auto versions = nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush/versions")->body);
  auto refused = Review(h, j["id"], {{"verdict", "OK"}, {"add_to_references", true}}, 422);
  EXPECT_NE(refused.dump().find("cannot be a reference"), std::string::npos) << refused.dump();
  EXPECT_EQ(nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush/versions")->body), versions) << "no new version";
  auto after = nlohmann::json::parse(h.Client(h.reader).Get(("/v1/inspections/" + j["id"].get<std::string>()).c_str())->body);
  EXPECT_TRUE(after["reviews"].empty()) << "the review itself is not recorded either";
  EXPECT_EQ(nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush")->body)["references"].size(), 1u);
}

}  // namespace
}  // namespace zeroqc

namespace zeroqc {
namespace {

// auto_references: an OK part scoring below margin x threshold joins the references by itself, up
// to max, as versions made by "auto_references"; a bad setting is refused.
TEST_P(Api, AutoReferencesAddConfidentGoodPartsUpToMax) {
  Harness h(UseLookupEngine);
  auto bad = h.Client(h.admin).Post("/v1/products", R"({"name":"brush","settings":{"auto_references":{"max":2,"margin":3}}})", "application/json");
  EXPECT_EQ(bad->status, 400) << "a margin above 1 would teach parts above the threshold";
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"brush","settings":{"auto_references":{"max":1,"margin":0.5}}})",
                                    "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", Shade(100), "good.png", "image/png"}};
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products/brush/references", ref)->status, 201);
  // LookupEngine: threshold 0.01; a shade 1 away scores 1/255 = 0.0039 < 0.5 x 0.01: confident.
  auto near = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(101), true)->body);
  ASSERT_EQ(near["verdict"], "OK");
  auto far = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(102), true)->body);  // 2/255 = 0.0078: OK, not confident
  ASSERT_EQ(far["verdict"], "OK");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto product = nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush")->body);
  EXPECT_EQ(product["references"].size(), 2u) << "the confident part only";
  auto versions = nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush/versions")->body);
  EXPECT_EQ(versions["items"][0]["actor"], Service::kAutoActor);
  EXPECT_EQ(versions["items"][0]["change"]["from_inspection"], near["id"]);
  EXPECT_EQ(nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(99), true)->body)["verdict"], "OK");  // confident too, but max is 1
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush")->body)["references"].size(), 2u) << "max reached";
}

}  // namespace
}  // namespace zeroqc

#include "cli/synthetic_plates.h"
#include "engines/patch/patch_engine.h"

namespace zeroqc {
namespace {

std::string PlatePng(std::mt19937& rng, testing::Defect d) {
  cv::Mat mask;
  std::vector<uint8_t> buf;
  cv::imencode(".png", testing::Plate(rng, d, &mask), buf);
  return std::string(buf.begin(), buf.end());
}

// Issue 11, item 3: an operator names a NOK region in a review ({"verdict": "NOK", "defects":
// [{"box", "name"}]}); later NOK regions like it get its name, with the similarity in the reason.
// The real embedded engine on synthetic plates: a scratch and a missing hole, one example each.
TEST_P(Api, NamedDefectsNameLikeRegionsOfLaterParts) {
  REQUIRE_BACKBONE();
  Harness h([](ServiceConfig& c) {
    c.make_engine = [](const zeroqc::Product&, const std::vector<fs::path>& refs) -> StatusOr<std::unique_ptr<Engine>> {
      PatchEngineOptions o;
      o.backbone_spec = testing::BackboneSpecPath();
      auto e = PatchEngine::Create(o, refs);
      if (!e.ok()) return e.status();
      return std::unique_ptr<Engine>(std::move(*e));
    };
  });
  for (const char* bad : {R"({"name":"plate","settings":{"naming":{"min_similarity":2}}})", R"({"name":"plate","settings":{"naming":0.5}})",
                          R"({"name":"plate","settings":{"naming":{"min_similarity":"high"}}})"})
    EXPECT_EQ(h.Client(h.admin).Post("/v1/products", bad, "application/json")->status, 400) << bad;
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"plate","settings":{"naming":{"min_similarity":0.5}}})", "application/json")->status, 201);
  std::mt19937 rng(11);
  for (int i = 0; i < 4; ++i) {
    httplib::MultipartFormDataItems ref = {{"image", PlatePng(rng, testing::Defect::kNone), "good.png", "image/png"}};
    ASSERT_EQ(h.Client(h.admin).Post("/v1/products/plate/references", ref)->status, 201);
  }
  // The engine is built first (its calibration: each reference's own score), with time to spare
  // on a loaded machine; then each part is queued and polled for.
  httplib::Client slow("127.0.0.1", h.api->port());
  slow.set_read_timeout(300, 0);
  slow.set_bearer_token_auth(h.reader.c_str());
  auto calibration = slow.Get("/v1/products/plate/calibration");
  ASSERT_TRUE(calibration && calibration->status == 200) << (calibration ? calibration->body : "no answer");
  auto cal = nlohmann::json::parse(calibration->body);
  ASSERT_EQ(cal["references"].size(), 4u);
  for (const auto& ref : cal["references"]) EXPECT_GT(ref["score"].get<double>(), 0) << cal.dump();
  EXPECT_GT(cal["threshold"].get<double>(), 0);
  auto inspect = [&](testing::Defect d) {
    auto r = h.Upload(h.writer, "plate", PlatePng(rng, d), false);
    EXPECT_TRUE(r && r->status == 202) << (r ? r->body : "no answer");
    nlohmann::json j;
    for (int i = 0; r && i < 1200; ++i) {
      auto g = h.Client(h.poller).Get(("/v1/inspections/" + nlohmann::json::parse(r->body)["id"].get<std::string>()).c_str());
      if (g && g->status == 200 && (j = nlohmann::json::parse(g->body))["status"] == "done") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(j["verdict"], "NOK") << j.dump();
    if (!j.contains("result") || !j["result"].is_object()) j["result"] = {{"objects", nlohmann::json::array()}};
    EXPECT_FALSE(j["result"]["objects"].empty()) << j.dump();
    return j;
  };
  auto first_name = [](const nlohmann::json& j) { return j["result"]["objects"].empty() ? "" : j["result"]["objects"][0].value("name", ""); };
  auto scratch = inspect(testing::Defect::kScratch);
  EXPECT_EQ(first_name(scratch), "anomaly") << "nothing named yet";
  ASSERT_FALSE(scratch["result"]["objects"].empty());
  const nlohmann::json scratch_box = scratch["result"]["objects"][0]["bounding_box"];

  // Refusals that record nothing: a box outside the image, a defect in an OK review, a reserved or
  // empty name, a malformed list.
  const std::string id = scratch["id"];
  Review(h, id, {{"verdict", "NOK"}, {"defects", {{{"box", {{"x_min", 0}, {"y_min", 0}, {"x_max", 5000}, {"y_max", 10}}}, {"name", "scratch"}}}}}, 400);
  Review(h, id, {{"verdict", "OK"}, {"defects", {{{"box", scratch_box}, {"name", "scratch"}}}}}, 400);
  Review(h, id, {{"verdict", "NOK"}, {"defects", {{{"box", scratch_box}, {"name", "anomaly"}}}}}, 400);
  Review(h, id, {{"verdict", "NOK"}, {"defects", {{{"box", scratch_box}, {"name", ""}}}}}, 400);
  Review(h, id, {{"verdict", "NOK"}, {"defects", "scratch"}}, 400);
  // Issue 27, finding 6: nineteen good boxes and a bad last one. Every box is checked before any is
  // described (a forward pass each), so the refusal names the bad one without describing the rest.
  nlohmann::json many = nlohmann::json::array();
  for (int i = 0; i < 19; ++i) many.push_back({{"box", scratch_box}, {"name", "scratch"}});
  many.push_back({{"box", {{"x_min", 0}, {"y_min", 0}, {"x_max", 5000}, {"y_max", 10}}}, {"name", "scratch"}});
  auto refused = Review(h, id, {{"verdict", "NOK"}, {"defects", many}}, 400);
  EXPECT_NE(refused.dump().find("defect 20 ('scratch'): the box must lie within"), std::string::npos) << refused.dump();
  Review(h, id, {{"verdict", "NOK"}, {"defects", {{{"box", {{"x_min", "a"}}}, {"name", "scratch"}}}}}, 400);
  auto unchanged = nlohmann::json::parse(h.Client(h.reader).Get(("/v1/inspections/" + id).c_str())->body);
  EXPECT_TRUE(unchanged["reviews"].empty()) << "refused reviews are not recorded";
  EXPECT_EQ(nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/plate/defect-examples")->body)["items"].size(), 0u);

  auto named = Review(h, id, {{"verdict", "NOK"}, {"defects", {{{"box", scratch_box}, {"name", "scratch"}}}}}, 201);
  ASSERT_EQ(named["named_defects"].size(), 1u) << named.dump();
  EXPECT_EQ(named["named_defects"][0]["name"], "scratch");
  EXPECT_EQ(named["named_defects"][0]["box"], scratch_box);

  // The other type: named from its own first part.
  auto hole = inspect(testing::Defect::kMissingHole);
  Review(h, hole["id"], {{"verdict", "NOK"}, {"defects", {{{"box", hole["result"]["objects"][0]["bounding_box"]}, {"name", "missing hole"}}}}}, 201);
  auto examples = nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/plate/defect-examples")->body)["items"];
  ASSERT_EQ(examples.size(), 2u);
  EXPECT_EQ(examples[0]["actor"], "line 3");
  EXPECT_EQ(examples[1]["inspection"], hole["id"]);

  // Later parts: each region named after the example it resembles, the similarity in the reason.
  for (int i = 0; i < 2; ++i) {
    auto s = inspect(testing::Defect::kScratch);
    EXPECT_EQ(first_name(s), "scratch") << s.dump();
    EXPECT_NE(s["result"]["objects"][0]["reason"].get<std::string>().find("similarity"), std::string::npos);
    auto m = inspect(testing::Defect::kMissingHole);
    EXPECT_EQ(first_name(m), "missing hole") << m.dump();
  }

  // A retired example names nothing more; an unknown one is 404; a reader may not retire one.
  const std::string path = "/v1/products/plate/defect-examples/" + std::to_string(examples[0]["id"].get<int64_t>());
  EXPECT_EQ(h.Client(h.reader).Delete(path.c_str())->status, 403);
  EXPECT_EQ(h.Client(h.writer).Delete(path.c_str())->status, 204);
  EXPECT_EQ(h.Client(h.writer).Delete(path.c_str())->status, 404);
  auto last = inspect(testing::Defect::kScratch);
  EXPECT_EQ(first_name(last), "anomaly") << "not like the missing hole either";
}

// An engine without region descriptors (here a stand-in; in the service the vlm engine, which names
// defects itself) refuses a naming review whole: 400, nothing recorded.
TEST_P(Api, NamingADefectNeedsAnEngineWithRegionDescriptors) {
  Harness h(UseLookupEngine);
  const nlohmann::json j = BrushPartJudgedNok(h);
  ASSERT_EQ(j["verdict"], "NOK");
  nlohmann::json box = {{"x_min", 1}, {"y_min", 1}, {"x_max", 20}, {"y_max", 20}};
  auto refused = Review(h, j["id"], {{"verdict", "NOK"}, {"defects", {{{"box", box}, {"name", "dent"}}}}}, 400);
  EXPECT_NE(refused.dump().find("names defects itself"), std::string::npos) << refused.dump();
  auto after = nlohmann::json::parse(h.Client(h.reader).Get(("/v1/inspections/" + j["id"].get<std::string>()).c_str())->body);
  EXPECT_TRUE(after["reviews"].empty());
  // The calibration of the product: its threshold and references.
  auto c = h.Client(h.reader).Get("/v1/products/brush/calibration");
  ASSERT_EQ(c->status, 200) << c->body;
  auto cal = nlohmann::json::parse(c->body);
  EXPECT_EQ(cal["threshold"], 0.01);
  EXPECT_EQ(cal["references"].size(), 1u);
  EXPECT_EQ(cal["version"], 2);
  // A product without references has nothing to calibrate: 400 with the reason, not a hang or a 500.
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"empty"})", "application/json")->status, 201);
  auto none = h.Client(h.reader).Get("/v1/products/empty/calibration");
  EXPECT_EQ(none->status, 400);
  EXPECT_NE(none->body.find("no reference images"), std::string::npos) << none->body;
  EXPECT_EQ(h.Client(h.reader).Get("/v1/products/ghost/calibration")->status, 404);
}

}  // namespace
}  // namespace zeroqc
