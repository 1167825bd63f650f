// A GenICam camera (GigE Vision or USB3 Vision) through Aravis: opened by device id, address or as
// the first one found, its features set from the station file, frames taken on a trigger and turned
// into BGR images. Not thread-safe: one station thread owns it.
#pragma once

#include <memory>
#include <string>

#include <opencv2/core.hpp>

#include "core/status.h"
#include "station/station_file.h"

struct _ArvCamera;
struct _ArvStream;

namespace zeroqc {

class Camera {
 public:
  // Opens the camera and sets pixel format, exposure, gain, region and the trigger (software:
  // frames only when Grab fires one; line0: the camera's hardware input; plc: zeroqc fires the
  // software trigger when the PLC's coil rises). kNotFound when no camera answers; kInvalidArgument
  // when the camera refuses a feature (named).
  static StatusOr<std::unique_ptr<Camera>> Open(const CameraSettings& settings, TriggerSource trigger);
  ~Camera();

  // `fire`: send the software trigger first. Waits up to `timeout_ms` for the frame. kCorrupt for a
  // frame that arrived incomplete (lost packets: never inspected as if whole), kUnavailable when none
  // came in time (the camera lost or not triggered).
  // `times`, when given: milliseconds waiting for the frame (from the trigger) and turning it into BGR.
  struct Times {
    double acquire_ms = 0, convert_ms = 0;
  };
  StatusOr<cv::Mat> Grab(int timeout_ms, bool fire, Times* times = nullptr);
  // Asks the camera for a register: false when it does not answer (unplugged, restarted, gone).
  bool Alive();
  const std::string& device_id() const { return id_; }
  int width() const { return width_; }
  int height() const { return height_; }
  int packet_size() const { return packet_size_; }  // GigE Vision stream packets (bytes); 0: not GigE
  // Non-empty when the stream's socket cannot hold a whole frame (what to change is in it).
  const std::string& buffer_warning() const { return buffer_warning_; }

 private:
  Camera() = default;
  _ArvCamera* cam_ = nullptr;
  _ArvStream* stream_ = nullptr;
  std::string id_, buffer_warning_;
  PixelFormat format_ = PixelFormat::kMono8;
  int width_ = 0, height_ = 0, packet_size_ = 0;
};

}  // namespace zeroqc
