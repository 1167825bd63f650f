// A station file (JSON): which product the station inspects, the camera and its features, where the
// trigger comes from, and the PLC's address and register map. Checked whole before a station starts:
// every mistake is named with where it is.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "station/frame.h"
#include "station/plc.h"

namespace zeroqc {

enum class TriggerSource { kSoftware, kLine0, kPlc };

struct CameraSettings {
  std::string id;  // GenICam device id (e.g. "Aravis-GV01"); empty: the first camera found
  std::optional<double> exposure_us, gain;
  PixelFormat pixel_format = PixelFormat::kMono8;
  std::optional<int> roi_x, roi_y, roi_width, roi_height;  // all four or none
  std::optional<int> packet_size;  // GigE Vision stream packet bytes; unset: the largest the path carries
  int timeout_ms = 1000;  // a triggered frame not here by then: the camera is checked, the part an error
};

struct StationConfig {
  std::string name = "station";  // inspections' "station"
  std::string product;
  CameraSettings camera;
  TriggerSource trigger = TriggerSource::kSoftware;
  double software_trigger_hz = 0;  // software trigger: frames a second (0: only on request)
  std::optional<PlcConfig> plc;    // required with trigger "plc"; optional otherwise (results only)
  int queue = 4;                   // triggers waiting while a part is inspected; more is an overrun
};

StatusOr<StationConfig> ParseStation(const nlohmann::json& j);
StatusOr<StationConfig> LoadStation(const std::filesystem::path& file);

}  // namespace zeroqc
