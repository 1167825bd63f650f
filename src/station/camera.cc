#include "station/camera.h"

#include <arv.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>

namespace zeroqc {
namespace {

// A GError's message, freed.
std::string Take(GError* e) {
  std::string m = e ? e->message : "unknown error";
  if (e) g_error_free(e);
  return m;
}

// The stream's UDP socket, found among this process's descriptors by the port Aravis bound it to
// (Aravis does not hand it out); -1 when not found.
int StreamSocket(uint16_t port) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    const int fd = std::atoi(e.path().filename().c_str());
    sockaddr_in a{};
    socklen_t n = sizeof a;
    int type = 0;
    socklen_t tn = sizeof type;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n) == 0 && a.sin_family == AF_INET && ntohs(a.sin_port) == port &&
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tn) == 0 && type == SOCK_DGRAM)
      return fd;
  }
  return -1;
}

// A frame's packets come in one burst, faster than a busy machine may read them: the stream's
// socket must hold whole frames, or packets are dropped and frames arrive incomplete. The system's
// default holds about 90 packets (a 384 x 384 RGB frame is 316 of 1400 bytes); Aravis leaves it so,
// or, asked to, raises it only once the first frame has begun. Sized here, before the first frame: room for 4 frames,
// forced past the system's limit where the process may (root or CAP_NET_ADMIN). Returns a warning
// when the socket still holds less than a frame.
std::string SizeStreamBuffer(ArvStream* stream, guint payload) {
  const int fd = StreamSocket(arv_gv_stream_get_port(ARV_GV_STREAM(stream)));
  if (fd < 0) {  // not found: Aravis sizes it at the first frame
    g_object_set(stream, "socket-buffer", ARV_GV_STREAM_SOCKET_BUFFER_AUTO, nullptr);
    return "";
  }
  const int want = int(std::min<guint64>(guint64(payload) * 4, 256u << 20));
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
  int got = 0;
  socklen_t n = sizeof got;
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &n);
  // The kernel counts each packet's whole buffer (about 1.7 times a 1400-byte packet's payload).
  if (guint64(got) >= 2 * guint64(payload)) return "";
  return "the stream's socket holds " + std::to_string(got / 1024) + " kB, less than one frame's packets need (" +
         std::to_string(2 * guint64(payload) / 1024) + " kB for a " + std::to_string(payload / 1024) +
         " kB frame): frames may arrive incomplete; raise the system's limit (sysctl -w net.core.rmem_max=" + std::to_string(want) +
         ") or run with CAP_NET_ADMIN";
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
    // The stream through an ordinary UDP socket, never Aravis's raw packet socket (its choice when
    // run as root): that socket takes every packet on the interface until its filter is attached,
    // and Aravis reads those strays as frames. One with a small frame id made every real frame
    // "late" (a stream silent after an open); one with a huge size aborted the process.
    arv_camera_gv_set_stream_options(c->cam_, ARV_GV_STREAM_OPTION_PACKET_SOCKET_DISABLED);
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
  if (ARV_IS_GV_STREAM(c->stream_)) c->buffer_warning_ = SizeStreamBuffer(c->stream_, payload);
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
