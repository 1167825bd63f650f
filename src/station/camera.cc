#include "station/camera.h"

#include <arv.h>

#include <chrono>

namespace zeroqc {
namespace {

// A GError's message, freed.
std::string Take(GError* e) {
  std::string m = e ? e->message : "unknown error";
  if (e) g_error_free(e);
  return m;
}

}  // namespace

StatusOr<std::unique_ptr<Camera>> Camera::Open(const CameraSettings& s, TriggerSource trigger) {
  std::unique_ptr<Camera> c(new Camera());
  GError* err = nullptr;
  c->cam_ = arv_camera_new(s.id.empty() ? nullptr : s.id.c_str(), &err);
  if (!c->cam_)
    return NotFound((s.id.empty() ? std::string("no camera found") : "camera '" + s.id + "' not found") + ": " + Take(err) +
                    " (arv-tool-0.8 lists the cameras Aravis sees)");
  // Each feature the station file sets, checked: a camera that refuses one is named with it.
  auto check = [&](const std::string& what) -> Status {
    if (!err) return Status::Ok();
    return InvalidArgument("camera " + c->id_ + ": " + what + ": " + Take(std::exchange(err, nullptr)));
  };
  const char* id = arv_camera_get_device_id(c->cam_, &err);
  c->id_ = id ? id : s.id;
  if (err) g_clear_error(&err);
  c->format_ = s.pixel_format;
  arv_camera_set_pixel_format_from_string(c->cam_, PixelFormatName(s.pixel_format).c_str(), &err);
  ZQ_RETURN_IF_ERROR(check("pixel format " + PixelFormatName(s.pixel_format)));
  if (s.roi_width) {
    arv_camera_set_region(c->cam_, *s.roi_x, *s.roi_y, *s.roi_width, *s.roi_height, &err);
    ZQ_RETURN_IF_ERROR(check("region"));
  }
  if (s.exposure_us) {
    arv_camera_set_exposure_time(c->cam_, *s.exposure_us, &err);
    ZQ_RETURN_IF_ERROR(check("exposure"));
  }
  if (s.gain) {
    arv_camera_set_gain(c->cam_, *s.gain, &err);
    ZQ_RETURN_IF_ERROR(check("gain"));
  }
  if (arv_camera_is_gv_device(c->cam_)) {
    // GigE Vision: the largest packet the path carries (jumbo frames: a sixth of the packets per
    // frame), found by sending test packets, unless the station file sets one.
    if (s.packet_size) {
      arv_camera_gv_set_packet_size(c->cam_, *s.packet_size, &err);
      c->packet_size_ = *s.packet_size;
    } else {
      c->packet_size_ = int(arv_camera_gv_auto_packet_size(c->cam_, &err));
    }
    ZQ_RETURN_IF_ERROR(check("packet size"));
  }
  arv_camera_set_acquisition_mode(c->cam_, ARV_ACQUISITION_MODE_CONTINUOUS, &err);
  ZQ_RETURN_IF_ERROR(check("continuous acquisition"));
  arv_camera_set_trigger(c->cam_, trigger == TriggerSource::kLine0 ? "Line0" : "Software", &err);
  ZQ_RETURN_IF_ERROR(check(trigger == TriggerSource::kLine0 ? "trigger on Line0" : "software trigger"));
  gint x = 0, y = 0;
  arv_camera_get_region(c->cam_, &x, &y, &c->width_, &c->height_, &err);
  ZQ_RETURN_IF_ERROR(check("region"));
  const guint payload = arv_camera_get_payload(c->cam_, &err);
  ZQ_RETURN_IF_ERROR(check("payload size"));
  c->stream_ = arv_camera_create_stream(c->cam_, nullptr, nullptr, &err);
  if (!c->stream_) return Unavailable("camera " + c->id_ + ": no stream: " + Take(err));
  for (int i = 0; i < 4; ++i) arv_stream_push_buffer(c->stream_, arv_buffer_new(payload, nullptr));
  arv_camera_start_acquisition(c->cam_, &err);
  ZQ_RETURN_IF_ERROR(check("start acquisition"));
  return c;
}

Camera::~Camera() {
  if (cam_) {
    GError* err = nullptr;
    arv_camera_stop_acquisition(cam_, &err);
    if (err) g_error_free(err);
  }
  if (stream_) g_object_unref(stream_);
  if (cam_) g_object_unref(cam_);
}

StatusOr<cv::Mat> Camera::Grab(int timeout_ms, bool fire, Times* times) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  GError* err = nullptr;
  if (fire) {
    // A frame that came after an earlier part gave up on it is not this part's: dropped first.
    while (ArvBuffer* stale = arv_stream_try_pop_buffer(stream_)) arv_stream_push_buffer(stream_, stale);
    arv_camera_software_trigger(cam_, &err);
    if (err) return Unavailable("camera " + id_ + ": software trigger: " + Take(err));
  }
  ArvBuffer* b = arv_stream_timeout_pop_buffer(stream_, guint64(timeout_ms) * 1000);
  if (!b) return Unavailable("camera " + id_ + ": no frame within " + std::to_string(timeout_ms) + " ms");
  const auto t1 = Clock::now();
  StatusOr<cv::Mat> out = Internal("unread");
  const ArvBufferStatus status = arv_buffer_get_status(b);
  if (status != ARV_BUFFER_STATUS_SUCCESS) {
    out = Corrupt("camera " + id_ + ": frame incomplete (buffer status " + std::to_string(int(status)) +
                  (status == ARV_BUFFER_STATUS_MISSING_PACKETS ? ", lost packets" : "") + "): not inspected");
  } else {
    size_t size = 0;
    const void* data = arv_buffer_get_image_data(b, &size);
    out = FrameToBgr({static_cast<const uint8_t*>(data), size}, arv_buffer_get_image_width(b), arv_buffer_get_image_height(b), format_);
  }
  arv_stream_push_buffer(stream_, b);  // the buffer goes back for the next frame
  if (times) {
    times->acquire_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    times->convert_ms = std::chrono::duration<double, std::milli>(Clock::now() - t1).count();
  }
  return out;
}

bool Camera::Alive() {
  GError* err = nullptr;
  (void)arv_camera_get_integer(cam_, "Width", &err);  // a real read: Aravis caches no register by default
  if (!err) return true;
  g_error_free(err);
  return false;
}

}  // namespace zeroqc
