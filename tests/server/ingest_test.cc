// Ways in and out besides the API's answers, over real HTTP and a real MQTT broker: webhooks (signed,
// retried, dead-lettered, private targets refused), the hot folder, MQTT results and images.
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

#include "server/api_harness.h"
#include "server/log.h"
#include "server/mqtt.h"
#include "server/webhook_target.h"
#include "vlm/http.h"

namespace zeroqc {
namespace {

// Every test runs against both stores.
class Ingest : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Store, Ingest, ::testing::Values("sqlite", "postgres"), StoreName);

// Issue 10, finding 7: a webhook could point at 169.254.169.254 or loopback.
TEST_P(Ingest, WebhooksToPrivateAddressesAreRefused) {
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

TEST_P(Ingest, WebhooksAreSignedRetriedAndDeadLettered) {
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

TEST_P(Ingest, HotFolderIngestsOnceThenMoves) {
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
TEST_P(Ingest, HotFolderNeverResubmitsAndWaitsForWholeFiles) {
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
  size_t Count(const std::string& topic) {
    std::lock_guard lock(mu_);
    return size_t(std::count_if(got_.begin(), got_.end(), [&](const Message& m) { return m.topic == topic; }));
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
TEST_P(Ingest, MqttPublishesResultsAndTakesImages) {
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

// Issue 27, findings 9, 10 and 15: an image over the upload limit was dropped without a word; two
// products whose topics fed each other's inputs sent 7,100 rejections in 3.5 s; user properties
// "source" and "topic" overwrote the metadata; a station called "rejected" left a retained result
// on the rejections topic.
TEST_P(Ingest, MqttRefusesOversizeAloudAndNeverLoops) {
  testing::Mosquitto broker(testing::TempDir());
  Harness h([](ServiceConfig& c) { c.limits.max_bytes = 1'500'000; });
  const nlohmann::json a = {{"name", "a"}, {"settings", {{"mqtt", {{"topic", "t1"}, {"input_topic", "i1"}}}}}};
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", a.dump(), "application/json")->status, 201);
  for (const auto& [topic, input] : std::vector<std::pair<std::string, std::string>>{{"i1", "t1"}, {"i1/x", "t2"}, {"t3", "t1/rejected"}}) {
    const nlohmann::json b = {{"name", "b"}, {"settings", {{"mqtt", {{"topic", topic}, {"input_topic", input}}}}}};
    auto r = h.Client(h.admin).Post("/v1/products", b.dump(), "application/json");
    EXPECT_EQ(r->status, 400) << topic << " / " << input;
    EXPECT_NE(r->body.find("product 'a'"), std::string::npos) << r->body;
  }
  httplib::MultipartFormDataItems ref = {{"image", Png(false), "good.png", "image/png"}};
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products/a/references", ref)->status, 201);
  auto bridge = MqttBridge::Start(*h.svc, {broker.url(), "zeroqc-test"});
  ASSERT_TRUE(bridge.ok()) << bridge.status().message();
  MqttClient line(broker.port(), "#");
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // subscribed by now

  line.Publish("i1/cam", std::string(2'000'000, 'x'));
  auto m = line.On("t1/rejected");
  ASSERT_TRUE(m) << "an oversize image got no answer";
  auto j = nlohmann::json::parse(m->payload);
  EXPECT_EQ(j["status"], 413) << j.dump();
  EXPECT_EQ(j["code"], "too_large");
  EXPECT_FALSE(m->retained);

  // A station called "rejected" publishes as default; user properties cannot rename the source.
  line.Publish("i1/rejected", Png(true), {{"source", "forged"}, {"topic", "forged"}});
  m = line.On("t1/default");
  ASSERT_TRUE(m) << "no result";
  j = nlohmann::json::parse(m->payload);
  EXPECT_EQ(j["metadata"]["source"], "mqtt");
  EXPECT_EQ(j["metadata"]["topic"], "i1/rejected");
  {
    MqttClient later(broker.port(), "t1/rejected");
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    EXPECT_EQ(later.Count("t1/rejected"), 0u) << "something retained on the rejections topic";
  }

  // Settings written around the API (an old database, a script) that would loop: the bridge never
  // takes what a product publishes as an image.
  ASSERT_TRUE(h.svc->store().PutProduct({"b", "patch", {{"mqtt", {{"topic", "i1"}, {"input_topic", "t1"}}}}, "", ""}).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  line.Publish("i1/cam", "garbage");
  line.Publish("t1/cam", "garbage");
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(line.Count("t1/rejected"), 1u) << "rejections fed each other";
  EXPECT_EQ(line.Count("i1/rejected"), 1u) << "rejections fed each other (one: the test's own image from station \"rejected\")";
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
