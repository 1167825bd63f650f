#include "server/mqtt.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <cstring>
#include <map>

#include "server/api.h"
#include "server/log.h"

namespace zeroqc {
namespace {

// A topic we publish to or subscribe below: no wildcards, no empty levels at the ends, no NUL.
Status CheckTopic(const std::string& t, const std::string& what) {
  if (t.empty() || t.size() > 512) return InvalidArgument(what + ": 1-512 bytes");
  if (t.find_first_of(std::string("+#\0", 3)) != std::string::npos) return InvalidArgument(what + ": no + or # wildcards");
  if (t.front() == '/' || t.back() == '/' || t.front() == '$') return InvalidArgument(what + ": may not start with / or $ or end with /");
  return Status::Ok();
}

// Whether topic `a` is `b` or lies below it (what a subscription to "b/#" receives).
bool Under(const std::string& a, const std::string& b) { return a == b || a.rfind(b + "/", 0) == 0; }

// Whether one of two (set) topics lies under the other: then messages on one reach the other.
bool Overlap(const std::string& a, const std::string& b) { return !a.empty() && !b.empty() && (Under(a, b) || Under(b, a)); }

struct BrokerUrl {
  std::string host, user, password;
  int port = 1883;
};

StatusOr<BrokerUrl> ParseBrokerUrl(const std::string& url) {
  const std::string scheme = "mqtt://";
  if (url.rfind(scheme, 0) != 0) return InvalidArgument("--mqtt: give mqtt://[user[:password]@]host[:port], not '" + url + "'");
  std::string rest = url.substr(scheme.size());
  if (auto slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
  BrokerUrl b;
  if (auto at = rest.rfind('@'); at != std::string::npos) {
    const std::string cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = cred.find(':');
    b.user = cred.substr(0, colon);
    if (colon != std::string::npos) b.password = cred.substr(colon + 1);
  }
  if (auto colon = rest.rfind(':'); colon != std::string::npos && rest.find(']') == std::string::npos) {
    try {
      b.port = std::stoi(rest.substr(colon + 1));
    } catch (...) {
      return InvalidArgument("--mqtt: bad port in '" + url + "'");
    }
    rest.resize(colon);
  }
  b.host = rest;
  if (b.host.empty() || b.port < 1 || b.port > 65535) return InvalidArgument("--mqtt: no host or bad port in '" + url + "'");
  return b;
}

}  // namespace

StatusOr<MqttTopics> ReadMqttSettings(const nlohmann::json& settings) {
  MqttTopics t;
  if (!settings.is_object() || !settings.contains("mqtt")) return t;
  const auto& m = settings["mqtt"];
  if (!m.is_object()) return InvalidArgument("settings.mqtt must be an object {topic, input_topic}");
  for (const auto& [k, v] : m.items()) {
    if (k != "topic" && k != "input_topic") return InvalidArgument("settings.mqtt: unknown field '" + k + "' (topic, input_topic)");
    if (!v.is_string()) return InvalidArgument("settings.mqtt." + k + " must be a string");
    ZQ_RETURN_IF_ERROR(CheckTopic(v.get<std::string>(), "settings.mqtt." + k));
  }
  t.topic = m.value("topic", "");
  t.input_topic = m.value("input_topic", "");
  if (Overlap(t.topic, t.input_topic))
    return InvalidArgument("settings.mqtt: topic and input_topic may not lie under one another (results would come back as images)");
  return t;
}

Status CheckMqttTopicsAgainst(const std::string& name, const MqttTopics& mine, const std::vector<Product>& products) {
  for (const auto& p : products) {
    if (p.name == name) continue;
    auto theirs = ReadMqttSettings(p.settings);
    if (!theirs.ok()) continue;
    if (Overlap(mine.topic, theirs->input_topic))
      return InvalidArgument("settings.mqtt.topic '" + mine.topic + "' and product '" + p.name + "''s input_topic '" + theirs->input_topic +
                             "' lie under one another: this product's results and rejections would come back to it as images");
    if (Overlap(theirs->topic, mine.input_topic))
      return InvalidArgument("settings.mqtt.input_topic '" + mine.input_topic + "' and product '" + p.name + "''s topic '" + theirs->topic +
                             "' lie under one another: its results and rejections would come here as images");
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<MqttBridge>> MqttBridge::Start(Service& service, MqttConfig config) {
  auto url = ParseBrokerUrl(config.url);
  if (!url.ok()) return url.status();
  static std::once_flag init;
  std::call_once(init, [] { mosquitto_lib_init(); });
  auto b = std::unique_ptr<MqttBridge>(new MqttBridge(service, std::move(config)));
  b->where_ = url->host + ":" + std::to_string(url->port);  // never the password
  b->mosq_ = mosquitto_new(b->cfg_.client_id.c_str(), true, b.get());
  if (!b->mosq_) return Internal("mqtt: cannot create a client");
  mosquitto_int_option(b->mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  if (!url->user.empty()) mosquitto_username_pw_set(b->mosq_, url->user.c_str(), url->password.empty() ? nullptr : url->password.c_str());
  mosquitto_reconnect_delay_set(b->mosq_, 1, 30, true);
  mosquitto_connect_v5_callback_set(b->mosq_, [](mosquitto*, void* self, int rc, int, const mosquitto_property*) {
    auto* me = static_cast<MqttBridge*>(self);
    me->connected_ = rc == 0;
    if (rc != 0) return;
    {
      std::lock_guard lock(me->mu_);
      me->subscribed_.clear();  // a clean session: subscribe again
    }
    log::Info("mqtt_connected", "mqtt: connected to " + me->where_, {{"broker", me->where_}});
  });
  mosquitto_disconnect_v5_callback_set(b->mosq_, [](mosquitto*, void* self, int rc, const mosquitto_property*) {
    auto* me = static_cast<MqttBridge*>(self);
    me->connected_ = false;
    if (!me->stop_) log::Warn("mqtt_disconnected", "mqtt: connection lost (" + std::string(mosquitto_strerror(rc)) + "); reconnecting");
  });
  mosquitto_message_v5_callback_set(b->mosq_, [](mosquitto*, void* self, const mosquitto_message* m, const mosquitto_property* props) {
    static_cast<MqttBridge*>(self)->Received(m->topic, {static_cast<const char*>(m->payload), size_t(m->payloadlen)}, props);
  });
  // The broker is told the largest message this client takes. Twice the upload limit: an image a
  // little too large still arrives and is answered on <topic>/rejected; a far larger one is dropped
  // by the broker, never held in memory here.
  mosquitto_property* connect_props = nullptr;
  mosquitto_property_add_int32(&connect_props, MQTT_PROP_MAXIMUM_PACKET_SIZE,
                               uint32_t(std::min<int64_t>(2 * service.config().limits.max_bytes + 65536, 268435455)));
  const int rc = mosquitto_connect_bind_v5(b->mosq_, url->host.c_str(), url->port, 30, nullptr, connect_props);
  mosquitto_property_free_all(&connect_props);
  if (rc != MOSQ_ERR_SUCCESS)
    return Unavailable("mqtt: cannot connect to " + url->host + ":" + std::to_string(url->port) + " (" +
                       (rc == MOSQ_ERR_ERRNO ? std::string(std::strerror(errno)) : mosquitto_strerror(rc)) + ")");
  if (mosquitto_loop_start(b->mosq_) != MOSQ_ERR_SUCCESS) return Internal("mqtt: cannot start the network thread");
  service.OnFinished([p = b.get()](const std::string& id) { p->Published(id); });
  b->sync_ = std::thread([p = b.get()] {
    while (!p->stop_) {
      p->SyncSubscriptions();
      for (int i = 0; i < 20 && !p->stop_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  return b;
}

MqttBridge::~MqttBridge() {
  stop_ = true;
  if (sync_.joinable()) sync_.join();
  svc_.OnFinished(nullptr);
  if (mosq_) {
    mosquitto_disconnect(mosq_);
    mosquitto_loop_stop(mosq_, false);
    mosquitto_destroy(mosq_);
  }
}

void MqttBridge::SyncSubscriptions() {
  std::map<std::string, std::string> wanted;  // input topic -> product
  std::set<std::string> outputs;
  for (const auto& p : svc_.store().ListProducts()) {
    auto t = ReadMqttSettings(p.settings);
    if (t.ok() && !t->input_topic.empty()) wanted.emplace(t->input_topic, p.name);
    if (t.ok() && !t->topic.empty()) outputs.insert(t->topic);
  }
  std::lock_guard lock(mu_);
  routes_ = wanted;
  outputs_ = outputs;
  if (!connected_) return;
  for (const auto& [t, product] : wanted) {
    if (subscribed_.count(t)) continue;
    // Shared: each image goes to one serve process of the group. "t/#" matches t itself too.
    const std::string filter = "$share/zeroqc/" + t + "/#";
    if (mosquitto_subscribe_v5(mosq_, nullptr, filter.c_str(), 1, 0, nullptr) == MOSQ_ERR_SUCCESS) subscribed_.insert(t);
  }
  for (auto it = subscribed_.begin(); it != subscribed_.end();) {
    if (wanted.count(*it)) {
      ++it;
      continue;
    }
    const std::string filter = "$share/zeroqc/" + *it + "/#";
    mosquitto_unsubscribe_v5(mosq_, nullptr, filter.c_str(), nullptr);
    it = subscribed_.erase(it);
  }
}

void MqttBridge::Received(const std::string& topic, std::string_view payload, const void* properties) {
  // The product whose input topic is the longest prefix of this topic (the routes of the last
  // sync, as the subscriptions are: no product query per message).
  std::string product, input;
  {
    std::lock_guard lock(mu_);
    for (const auto& [t, p] : routes_)
      if (Under(topic, t) && t.size() > input.size()) product = p, input = t;
    // What a product published (a result, a rejection) is never an image: the saved settings
    // cannot make such a loop, and this holds even against settings written around the API.
    for (const auto& out : outputs_)
      if (Under(topic, out) && !product.empty()) {
        product.clear();
        if (auto now = std::chrono::steady_clock::now(); now - last_loop_warning_ > std::chrono::seconds(10)) {
          last_loop_warning_ = now;
          log::Warn("mqtt_loop_refused", "mqtt: a message on " + topic + " is not taken as an image: a product publishes to " + out +
                                             " (fix the products' mqtt topics)", {{"topic", topic}});
        }
      }
  }
  if (product.empty()) return;  // no product takes images here (any more)
  NewInspection n;
  n.product = product;
  n.station = topic.size() > input.size() ? topic.substr(input.size() + 1) : "";
  n.image_name = topic.substr(topic.rfind('/') + 1);
  n.metadata = {{"source", "mqtt"}, {"topic", topic}};
  const auto* prop = static_cast<const mosquitto_property*>(properties);
  for (bool first = true;; first = false) {
    char *name = nullptr, *value = nullptr;
    prop = mosquitto_property_read_string_pair(prop, MQTT_PROP_USER_PROPERTY, &name, &value, !first);
    if (!prop) break;
    const std::string k = name ? name : "", v = value ? value : "";
    std::free(name), std::free(value);
    if (k == "batch") n.batch = v.substr(0, 256);
    else if (k == "part_id") n.part_id = v.substr(0, 256);
    else if (k == "station") n.station = v.substr(0, 256);
    else if (n.metadata.size() < 64 && !n.metadata.contains(k.substr(0, 128))) n.metadata[k.substr(0, 128)] = v.substr(0, 1024);  // source and topic are ours
  }
  auto id = svc_.Submit(n, payload);
  if (!id.ok()) return Reject(product, topic, id.status());
  log::Info("mqtt_image_accepted", "mqtt: image on " + topic + " queued as inspection " + *id,
            {{"topic", topic}, {"product", product}, {"inspection", *id}});
}

void MqttBridge::Reject(const std::string& product, const std::string& input_topic, const Status& why) {
  log::Warn("mqtt_image_refused", "mqtt: image on " + input_topic + " refused: " + why.message(),
            {{"topic", input_topic}, {"product", product}, {"error", why.message()}});
  auto p = svc_.store().GetProduct(product);
  auto t = p ? ReadMqttSettings(p->settings) : StatusOr<MqttTopics>(NotFound(""));
  if (!t.ok() || t->topic.empty()) return;
  const std::string body = nlohmann::json({{"event", "image.refused"}, {"topic", input_topic}, {"product", product},
                                           {"status", HttpStatusOf(why.code())}, {"code", CodeName(why.code())}, {"error", why.message()}})
                               .dump();
  mosquitto_publish_v5(mosq_, nullptr, (t->topic + "/rejected").c_str(), int(body.size()), body.data(), 1, false, nullptr);
}

void MqttBridge::Published(const std::string& id) {
  auto j = svc_.store().GetInspection(id);
  if (!j) return;
  auto p = svc_.store().GetProduct((*j)["product"].get<std::string>());
  auto t = p ? ReadMqttSettings(p->settings) : StatusOr<MqttTopics>(NotFound(""));
  if (!t.ok() || t->topic.empty()) return;
  std::string station = (*j)["station"].is_string() ? (*j)["station"].get<std::string>() : "";
  // <topic>/rejected is for refused images, never retained: a station by that name publishes as default.
  if (station.empty() || !CheckTopic(station, "station").ok() || station == "rejected") station = "default";
  const std::string topic = t->topic + "/" + station, body = j->dump();
  // Retained: a dashboard that subscribes later sees each station's last result at once.
  const int rc = mosquitto_publish_v5(mosq_, nullptr, topic.c_str(), int(body.size()), body.data(), 1, true, nullptr);
  if (rc != MOSQ_ERR_SUCCESS)
    log::Warn("mqtt_publish_failed", "mqtt: inspection " + id + " not published on " + topic + " (" + mosquitto_strerror(rc) + ")",
              {{"inspection", id}, {"topic", topic}, {"error", mosquitto_strerror(rc)}});
}

}  // namespace zeroqc
