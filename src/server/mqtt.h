// MQTT for the line (libmosquitto, MQTT 5): a product whose settings have
//   "mqtt": {"topic": "plant/line3/disc", "input_topic": "plant/line3/disc/images"}
// gets every finished inspection published as JSON on <topic>/<station> (QoS 1, retained: the
// last result of each station is there for whoever subscribes later), and images published on
// <input_topic> or below it inspected (payload = the image's bytes; the topic level below
// <input_topic> is the station; MQTT 5 user properties batch, part_id and station fill those
// fields, any other user property goes into the metadata). An image that is refused is answered
// on <topic>/rejected (never retained), also one too large for the limit (up to twice the limit:
// beyond that the broker drops it unseen, as MQTT 5's maximum packet size says). A message on a
// topic that some product publishes to is never taken as an image, and no product may be saved
// with topics that would allow it. The station "rejected" publishes as "default". Input subscriptions are shared ($share/zeroqc/...): with many serve
// processes on one broker, each image is taken by one of them.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "server/service.h"

struct mosquitto;

namespace zeroqc {

struct MqttConfig {
  std::string url;        // mqtt://[user[:password]@]host[:port]
  std::string client_id;  // unique per serve process
};

// A product's MQTT settings, checked: topics without wildcards, at most 512 bytes.
struct MqttTopics {
  std::string topic, input_topic;
};
StatusOr<MqttTopics> ReadMqttSettings(const nlohmann::json& settings);
// What product `name` publishes (its topic and everything below: results, rejections) may be no
// product's input, and its input may take nothing any product publishes: else two products'
// rejections feed each other for ever. `products`: every product as stored (its own old settings
// included, which are skipped).
Status CheckMqttTopicsAgainst(const std::string& name, const MqttTopics& mine, const std::vector<Product>& products);

class MqttBridge {
 public:
  // Connects (an unreachable broker is an error at start; later it reconnects by itself).
  static StatusOr<std::unique_ptr<MqttBridge>> Start(Service& service, MqttConfig config);
  ~MqttBridge();

 private:
  MqttBridge(Service& s, MqttConfig c) : svc_(s), cfg_(std::move(c)) {}
  void Published(const std::string& inspection);  // Service's finished hook
  void Received(const std::string& topic, std::string_view payload, const void* properties);
  void SyncSubscriptions();  // products' input topics -> subscriptions, every 2 s and on connect
  void Reject(const std::string& product, const std::string& input_topic, const Status& why);

  Service& svc_;
  MqttConfig cfg_;
  std::string where_;  // host:port, for logs
  mosquitto* mosq_ = nullptr;
  std::mutex mu_;
  std::set<std::string> subscribed_;          // input topics
  std::map<std::string, std::string> routes_;  // input topic -> product, as of the last sync
  std::set<std::string> outputs_;              // every product's result topic, as of the last sync
  std::chrono::steady_clock::time_point last_loop_warning_{};
  std::atomic<bool> stop_{false}, connected_{false};
  std::thread sync_;
};

}  // namespace zeroqc
