// The station loop of `serve --station FILE`: triggers (the PLC's coil, the camera's Line0 input,
// or zeroqc's own software trigger) -> a frame from the camera -> the product's engine at once (not
// through the queue) -> the verdict to the PLC -> stored as any inspection (page, webhooks, MQTT,
// reviews). Results reach the PLC in trigger order. Faults are results, never silence: a frame that
// came incomplete, a trigger while `queue` frames already wait (an overrun) and a camera that does
// not answer are each an error result; a lost camera or PLC is reconnected with backoff.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "server/service.h"
#include "station/camera.h"
#include "station/plc.h"
#include "station/station_file.h"

namespace zeroqc {

class Station : public Service::StationView {
 public:
  // Starts the threads; the camera and the PLC are connected by them (with backoff), so that a
  // station whose devices are away starts and says so (State, /metrics, one log line each).
  static StatusOr<std::unique_ptr<Station>> Start(Service& service, StationConfig config);
  ~Station() override;
  // Takes no new trigger, finishes the parts already taken (their results go to the PLC) and
  // stores them. Called on SIGTERM.
  void Stop();
  // A software trigger from the API (trigger "software"): false when this station has another source.
  bool Fire() override;

  nlohmann::json State() override;
  std::string LastFrameJpeg() override;
  void WriteMetrics(std::ostream& out) override;

 private:
  struct Part {
    int64_t seq = 0;       // the station's own count of parts since it started
    uint16_t part_id = 0;  // the PLC's, when it writes one
    std::chrono::steady_clock::time_point trigger;
    cv::Mat frame;
    std::string error, error_kind;  // error_kind: overrun, incomplete, camera
    double acquire_ms = 0, convert_ms = 0, queue_ms = 0, engine_ms = 0, plc_ms = 0, total_ms = 0;
    Inspection inspection;
    int64_t version = 0;
    std::string plc = "none";  // delivered, undelivered, none (no PLC)
    int plc_counter = -1;
  };
  Station(Service& s, StationConfig c) : svc_(s), cfg_(std::move(c)) {}
  void AcquireLoop();
  void InspectLoop();
  void RecordLoop();
  // Waits for the next trigger; nullopt when stopping or none came (poll again). Sets `part_id`.
  std::optional<std::chrono::steady_clock::time_point> NextTrigger(uint16_t* part_id);
  bool EnsureCamera();
  void CameraLost(const std::string& why);
  void Push(Part p);
  // Makes `p` an overrun's error result: `waiting` frames were ahead of it; `what` became of it.
  void Overrun(Part& p, int waiting, const std::string& what) const;
  void SleepFor(std::chrono::milliseconds d);

  Service& svc_;
  StationConfig cfg_;
  std::unique_ptr<Camera> camera_;  // the acquisition thread's
  std::unique_ptr<Plc> plc_;        // thread-safe: triggers read by one thread, results written by another
  std::chrono::milliseconds camera_backoff_{250};
  static constexpr int kSilentTriggersBeforeReopen = 3;
  int silent_triggers_ = 0;  // triggered grabs in a row that timed out with the camera answering
  std::chrono::steady_clock::time_point camera_retry_at_{}, next_tick_{};

  std::mutex mu_;  // everything below
  std::condition_variable cv_;
  bool stop_ = false, acquiring_done_ = false, inspecting_done_ = false;
  int fire_requests_ = 0;
  std::deque<std::unique_ptr<Part>> parts_, records_;
  int frames_waiting_ = 0;
  int packet_size_ = 0;  // the camera's GigE Vision packets, as last opened
  std::string camera_warning_;  // what the camera as last opened warned of (Camera::buffer_warning)
  struct Device {
    std::string state, error, since;  // state: connecting, connected, lost (camera), unreachable (PLC), none
  } camera_state_{"connecting", "", ""}, plc_state_{"none", "", ""};
  struct Counters {
    int64_t parts = 0, ok = 0, nok = 0, errors = 0, overruns = 0, incomplete = 0, undelivered = 0, camera_losses = 0;
  } counts_;
  nlohmann::json last_ = nullptr;
  cv::Mat last_frame_;
  std::map<std::string, std::deque<double>> times_;  // the last 1024 of each stage, ms
  void SetDevice(Device& d, const char* what, const std::string& state, const std::string& error);

  std::thread acquire_, inspect_, record_;
};

}  // namespace zeroqc
