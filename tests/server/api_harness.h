// The API tests' harness: an in-process service with a fake engine whose verdicts are known (a
// bright spot is a defect, or a part is OK when it looks like a reference), served over real HTTP on
// 127.0.0.1, with a SQLite or a PostgreSQL store.
#pragma once

#include <httplib.h>

#include <future>
#include <map>
#include <thread>

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/base64.h"
#include "server/api.h"
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
    extra["replace"] = true;  // made, or made again with these settings
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
  EXPECT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"brush","settings":{"reviews_add_references":"write"}})", "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", Shade(100), "good.png", "image/png"}};
  EXPECT_EQ(h.Client(h.admin).Post("/v1/products/brush/references", ref)->status, 201);
  return nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), true)->body);
}

nlohmann::json Review(Harness& h, const std::string& id, const nlohmann::json& body, int expect) {
  auto r = h.Client(h.writer).Post(("/v1/inspections/" + id + "/review").c_str(), body.dump(), "application/json");
  EXPECT_TRUE(r && r->status == expect) << (r ? std::to_string(r->status) + " " + r->body : "no answer");
  return r ? nlohmann::json::parse(r->body, nullptr, false) : nlohmann::json();
}

// Every API test runs against both stores: SQLite (the embedded default) and PostgreSQL. Each test
// file instantiates its own suite with these names.
inline std::string StoreName(const ::testing::TestParamInfo<std::string>& i) { return i.param; }

}  // namespace
}  // namespace zeroqc
