// The station's devices as tests stand them up, on loopback and speaking the real protocols:
// Aravis's own fake GigE Vision camera in this process (GVCP control, GVSP stream on 127.0.0.1),
// whose frames are real photos, and a libmodbus server standing in for the PLC.
#pragma once

#include <arv.h>
#include <modbus/modbus.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

namespace zeroqc::testing {

inline int FreePort() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &n);
  close(s);
  return ntohs(a.sin_port);
}

// Writes `bgr`, scaled to w x h, into a frame buffer of the given GenICam pixel format.
inline void RenderFrame(const cv::Mat& bgr, int w, int h, ArvPixelFormat format, uint8_t* out) {
  cv::Mat img;
  cv::resize(bgr, img, {w, h}, 0, 0, cv::INTER_AREA);
  if (format == ARV_PIXEL_FORMAT_RGB_8_PACKED) {
    cv::Mat rgb(h, w, CV_8UC3, out);
    cv::cvtColor(img, rgb, cv::COLOR_BGR2RGB);
  } else if (format == ARV_PIXEL_FORMAT_BAYER_RG_8) {
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const cv::Vec3b p = img.at<cv::Vec3b>(y, x);
        out[y * w + x] = y % 2 == 0 ? (x % 2 == 0 ? p[2] : p[1]) : (x % 2 == 0 ? p[1] : p[0]);
      }
  } else {
    cv::Mat gray(h, w, CV_8UC1, out);
    cv::cvtColor(img, gray, cv::COLOR_BGR2GRAY);
  }
}

// Aravis's fake GigE Vision camera on 127.0.0.1. Each frame shows what `next` returns (called once
// per frame, on the camera's thread), at the region `width` x `height` the station sets: the
// buffer is filled before it says its own size. One per process at a time: it holds the GigE
// Vision control port (ctest runs these tests under one resource lock).
class FakeGigECamera {
 public:
  using Next = std::function<cv::Mat()>;
  FakeGigECamera(Next next, int width, int height) : next_(std::move(next)), width_(width), height_(height) { Start(); }
  ~FakeGigECamera() { Stop(); }
  void Start() {
    fake_ = arv_gv_fake_camera_new("127.0.0.1", "ZQ01");
    arv_fake_camera_set_fill_pattern(arv_gv_fake_camera_get_fake_camera(fake_), Fill, this);
  }
  // Unplugged: the camera stops answering and sending.
  void Stop() {
    if (fake_) g_object_unref(fake_);
    fake_ = nullptr;
  }
  bool running() const { return fake_ && arv_gv_fake_camera_is_running(fake_); }
  // The share of GVSP packets the camera drops (a bad cable, a full switch).
  void LosePackets(double ratio) { g_object_set(G_OBJECT(fake_), "gvsp-lost-ratio", ratio, nullptr); }
  int frames() const { return frames_; }
  // How often the camera looks for a trigger (Aravis's default: 25 Hz, so up to 40 ms before a
  // triggered frame starts); a real camera starts its exposure within microseconds.
  // A pulse on the camera's Line0 input (a light barrier). Aravis's fake camera has no input line:
  // this plays the camera's electronics, making it take and send one frame unasked, which is what a
  // station triggered on Line0 sees of a real pulse.
  void PulseLine0() {
    ArvFakeCamera* c = arv_gv_fake_camera_get_fake_camera(fake_);
    arv_fake_camera_write_register(c, ARV_FAKE_CAMERA_REGISTER_TRIGGER_SOURCE, 1);
    arv_fake_camera_write_register(c, ARV_FAKE_CAMERA_REGISTER_TRIGGER_SOFTWARE, 1);
  }
  void TriggerPollHz(double hz) { arv_fake_camera_set_trigger_frequency(arv_gv_fake_camera_get_fake_camera(fake_), hz); }

 private:
  static void Fill(ArvBuffer* buffer, void* data, guint32, guint32, ArvPixelFormat format) {
    auto* self = static_cast<FakeGigECamera*>(data);
    auto* out = static_cast<uint8_t*>(const_cast<void*>(arv_buffer_get_data(buffer, nullptr)));
    const cv::Mat scene = self->next_();
    ++self->frames_;
    if (!scene.empty()) RenderFrame(scene, self->width_, self->height_, format, out);
  }
  Next next_;
  int width_, height_;
  std::atomic<int> frames_{0};
  ArvGvFakeCamera* fake_ = nullptr;
};

// A Modbus TCP server with 256 coils and 256 holding registers on 127.0.0.1:`port`, serving one
// client at a time until stopped: the PLC. Its memory is read and written under `Lock`.
class FakePlc {
 public:
  explicit FakePlc(int port) : port_(port), map_(modbus_mapping_new(256, 0, 256, 0)) { Start(); }
  ~FakePlc() {
    Stop();
    modbus_mapping_free(map_);
  }
  void Start() {
    stop_ = false;
    ctx_ = modbus_new_tcp("127.0.0.1", port_);
    listen_ = modbus_tcp_listen(ctx_, 1);
    ASSERT_GE(listen_, 0) << modbus_strerror(errno);
    thread_ = std::thread([this] { Serve(); });
  }
  void Stop() {
    if (!ctx_) return;
    stop_ = true;
    shutdown(listen_, SHUT_RDWR);
    if (client_ >= 0) shutdown(client_, SHUT_RDWR);
    thread_.join();
    close(listen_);
    modbus_free(ctx_);
    ctx_ = nullptr;
  }
  // The PLC's memory, held still while `f` reads or writes it.
  template <typename F>
  auto With(F f) {
    std::lock_guard lock(mu_);
    return f(*map_);
  }
  modbus_mapping_t* map() { return map_; }  // for tests that read it while nothing is served
  // Every write of 4 registers at `result_register` as the PLC received it, in order: a PLC's
  // program sees each one, however fast they follow each other.
  struct Result {
    uint16_t verdict, score, part_id, counter;
  };
  void RecordResultsAt(int result_register) { result_register_ = result_register; }
  std::vector<Result> results() {
    std::lock_guard lock(mu_);
    return results_;
  }
  // Waits (without spinning: a benchmark's PLC must not take the CPU the engine needs) until `n`
  // results have come in all; false after `timeout`.
  bool WaitResults(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return results_cv_.wait_for(lock, timeout, [&] { return results_.size() >= n; });
  }

 private:
  void Serve() {
    while (!stop_) {
      int s = listen_;
      client_ = modbus_tcp_accept(ctx_, &s);
      if (client_ < 0) return;
      uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
      for (;;) {
        const int n = modbus_receive(ctx_, query);
        if (n < 0) break;
        std::lock_guard lock(mu_);
        if (n <= 0) continue;
        modbus_reply(ctx_, query, n, map_);
        const int h = modbus_get_header_length(ctx_);  // function code, then the first address
        if (result_register_ >= 0 && query[h] == 0x10 && ((query[h + 1] << 8) | query[h + 2]) == result_register_) {
          const uint16_t* r = map_->tab_registers + result_register_;
          results_.push_back({r[0], r[1], r[2], r[3]});
          results_cv_.notify_all();
        }
      }
      close(client_);
      client_ = -1;
    }
  }
  int port_;
  modbus_mapping_t* map_;
  std::mutex mu_;
  int result_register_ = -1;
  std::vector<Result> results_;
  std::condition_variable results_cv_;
  modbus_t* ctx_ = nullptr;
  int listen_ = -1;
  std::atomic<int> client_{-1};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace zeroqc::testing
