#include "station/station_file.h"

#include <fstream>
#include <regex>
#include <set>

namespace zeroqc {
namespace {

// The keys an object may hold; anything else is a typo the user must hear of.
Status OnlyKeys(const nlohmann::json& j, const std::string& where, const std::set<std::string>& keys) {
  if (!j.is_object()) return InvalidArgument(where + " must be an object");
  for (const auto& [k, v] : j.items())
    if (!keys.count(k)) {
      std::string known;
      for (const auto& x : keys) known += (known.empty() ? "" : ", ") + x;
      return InvalidArgument(where + ": unknown key '" + k.substr(0, 64) + "' (known: " + known + ")");
    }
  return Status::Ok();
}

StatusOr<int> Int(const nlohmann::json& j, const std::string& key, const std::string& where, int lo, int hi) {
  if (!j[key].is_number_integer()) return InvalidArgument(where + "." + key + " must be a whole number");
  const auto v = j[key].get<int64_t>();
  if (v < lo || v > hi) return InvalidArgument(where + "." + key + " must be " + std::to_string(lo) + "-" + std::to_string(hi));
  return int(v);
}

StatusOr<double> Number(const nlohmann::json& j, const std::string& key, const std::string& where, double lo, double hi) {
  if (!j[key].is_number()) return InvalidArgument(where + "." + key + " must be a number");
  const double v = j[key].get<double>();
  if (!(v >= lo && v <= hi)) return InvalidArgument(where + "." + key + " must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return v;
}

StatusOr<CameraSettings> ParseCamera(const nlohmann::json& j) {
  ZQ_RETURN_IF_ERROR(OnlyKeys(j, "camera", {"id", "exposure_us", "gain", "pixel_format", "roi", "timeout_ms", "packet_size"}));
  CameraSettings c;
  if (j.contains("id")) {
    if (!j["id"].is_string()) return InvalidArgument("camera.id must be a string (the GenICam device id; leave it out for the first camera found)");
    c.id = j["id"];
  }
  if (j.contains("exposure_us")) {
    auto v = Number(j, "exposure_us", "camera", 1, 10e6);
    if (!v.ok()) return v.status();
    c.exposure_us = *v;
  }
  if (j.contains("gain")) {
    auto v = Number(j, "gain", "camera", 0, 1000);
    if (!v.ok()) return v.status();
    c.gain = *v;
  }
  if (j.contains("packet_size")) {
    auto v = Int(j, "packet_size", "camera", 576, 16000);
    if (!v.ok()) return v.status();
    c.packet_size = *v;
  }
  if (j.contains("timeout_ms")) {
    auto v = Int(j, "timeout_ms", "camera", 10, 60000);
    if (!v.ok()) return v.status();
    c.timeout_ms = *v;
  }
  if (j.contains("pixel_format")) {
    if (!j["pixel_format"].is_string()) return InvalidArgument("camera.pixel_format must be a string");
    auto f = ParsePixelFormat(j["pixel_format"].get<std::string>());
    if (!f.ok()) return InvalidArgument("camera." + f.status().message());
    c.pixel_format = *f;
  }
  if (j.contains("roi")) {
    const auto& r = j["roi"];
    ZQ_RETURN_IF_ERROR(OnlyKeys(r, "camera.roi", {"x", "y", "width", "height"}));
    for (const char* k : {"x", "y", "width", "height"})
      if (!r.contains(k)) return InvalidArgument(std::string("camera.roi needs x, y, width and height (") + k + " is missing)");
    auto x = Int(r, "x", "camera.roi", 0, 65535), y = Int(r, "y", "camera.roi", 0, 65535);
    auto w = Int(r, "width", "camera.roi", 1, 65535), h = Int(r, "height", "camera.roi", 1, 65535);
    for (const auto* v : {&x, &y, &w, &h})
      if (!v->ok()) return v->status();
    c.roi_x = *x, c.roi_y = *y, c.roi_width = *w, c.roi_height = *h;
  }
  return c;
}

StatusOr<PlcConfig> ParsePlc(const nlohmann::json& j) {
  ZQ_RETURN_IF_ERROR(OnlyKeys(j, "plc", {"host", "port", "unit", "trigger_coil", "part_id_register", "result_register", "timeout_ms", "poll_ms"}));
  PlcConfig p;
  if (!j.contains("host") || !j["host"].is_string() || j["host"].get<std::string>().empty())
    return InvalidArgument("plc.host must name the PLC's address (e.g. \"192.168.0.10\")");
  p.host = j["host"];
  struct Field {
    const char* key;
    int* into;
    int lo, hi;
  };
  for (const Field& f : {Field{"port", &p.port, 1, 65535}, Field{"unit", &p.unit, 0, 247}, Field{"trigger_coil", &p.trigger_coil, 0, 65535},
                         Field{"part_id_register", &p.part_id_register, -1, 65535}, Field{"result_register", &p.result_register, 0, 65532},
                         Field{"timeout_ms", &p.timeout_ms, 10, 60000}, Field{"poll_ms", &p.poll_ms, 1, 1000}}) {
    if (!j.contains(f.key)) continue;
    auto v = Int(j, f.key, "plc", f.lo, f.hi);
    if (!v.ok()) return v.status();
    *f.into = *v;
  }
  if (p.part_id_register >= p.result_register && p.part_id_register < p.result_register + 4)
    return InvalidArgument("plc.part_id_register " + std::to_string(p.part_id_register) + " lies in the result registers " +
                           std::to_string(p.result_register) + "-" + std::to_string(p.result_register + 3));
  return p;
}

}  // namespace

StatusOr<StationConfig> ParseStation(const nlohmann::json& j) {
  ZQ_RETURN_IF_ERROR(OnlyKeys(j, "the station file", {"name", "product", "camera", "trigger", "software_trigger_hz", "plc", "queue"}));
  StationConfig s;
  if (j.contains("name")) {
    // Letters, digits, '-', '_' and '.': it labels the station's lines in /metrics and its MQTT topic.
    static const std::regex kName("[A-Za-z0-9][A-Za-z0-9_.-]{0,63}");
    if (!j["name"].is_string() || !std::regex_match(j["name"].get<std::string>(), kName))
      return InvalidArgument("name must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit (the station's name in results)");
    s.name = j["name"];
  }
  if (!j.contains("product") || !j["product"].is_string() || j["product"].get<std::string>().empty())
    return InvalidArgument("the station file needs \"product\": the product its parts are inspected as");
  s.product = j["product"];
  if (j.contains("camera")) {
    auto c = ParseCamera(j["camera"]);
    if (!c.ok()) return c.status();
    s.camera = *c;
  }
  const std::string trigger = j.contains("trigger") && j["trigger"].is_string() ? j["trigger"].get<std::string>() : j.contains("trigger") ? "?" : "software";
  if (trigger == "software") s.trigger = TriggerSource::kSoftware;
  else if (trigger == "line0") s.trigger = TriggerSource::kLine0;
  else if (trigger == "plc") s.trigger = TriggerSource::kPlc;
  else return InvalidArgument("trigger must be \"software\", \"line0\" (the camera's hardware input) or \"plc\" (the PLC's trigger coil)");
  if (j.contains("software_trigger_hz")) {
    auto v = Number(j, "software_trigger_hz", "the station", 0, 1000);
    if (!v.ok()) return v.status();
    s.software_trigger_hz = *v;
  }
  if (j.contains("plc")) {
    auto p = ParsePlc(j["plc"]);
    if (!p.ok()) return p.status();
    s.plc = *p;
  }
  if (s.trigger == TriggerSource::kPlc && !s.plc) return InvalidArgument("trigger \"plc\" needs a \"plc\" section: its host and register map");
  if (j.contains("queue")) {
    auto v = Int(j, "queue", "the station", 0, 64);
    if (!v.ok()) return v.status();
    s.queue = *v;
  }
  return s;
}

StatusOr<StationConfig> LoadStation(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return NotFound("station file " + file.string() + " cannot be read");
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  if (text.size() > 64 * 1024) return InvalidArgument("station file " + file.string() + " is over 64 KB");
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return InvalidArgument("station file " + file.string() + " is not valid JSON");
  auto s = ParseStation(j);
  if (!s.ok()) return Status(s.status().code(), file.string() + ": " + s.status().message());
  return s;
}

}  // namespace zeroqc
