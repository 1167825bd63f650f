#include "station/station.h"

#include <algorithm>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "server/log.h"

namespace zeroqc {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

const char* TriggerName(TriggerSource t) {
  return t == TriggerSource::kPlc ? "plc" : t == TriggerSource::kLine0 ? "line0" : "software";
}

constexpr auto kMaxBackoff = std::chrono::milliseconds(5000);
constexpr size_t kTimesKept = 1024;  // per stage, for the quantiles

}  // namespace

StatusOr<std::unique_ptr<Station>> Station::Start(Service& service, StationConfig config) {
  if (!service.store().GetProduct(config.product))
    log::Warn("station_product_missing", "station " + config.name + ": product '" + config.product +
                                             "' does not exist yet: parts are error results until it has references");
  std::unique_ptr<Station> s(new Station(service, std::move(config)));
  if (s->cfg_.plc) {
    s->plc_ = Plc::Later(*s->cfg_.plc);
    s->plc_state_.state = "connecting";
  }
  s->acquire_ = std::thread([p = s.get()] { p->AcquireLoop(); });
  s->inspect_ = std::thread([p = s.get()] { p->InspectLoop(); });
  s->record_ = std::thread([p = s.get()] { p->RecordLoop(); });
  service.Attach(s.get());
  return s;
}

Station::~Station() { Stop(); }

void Station::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_ && !acquire_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_all();
  for (auto* t : {&acquire_, &inspect_, &record_})
    if (t->joinable()) t->join();
  svc_.Attach(nullptr);
}

bool Station::Fire() {
  if (cfg_.trigger != TriggerSource::kSoftware) return false;
  {
    std::lock_guard lock(mu_);
    ++fire_requests_;
  }
  cv_.notify_all();
  return true;
}

void Station::SleepFor(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [&] { return stop_; });
}

void Station::SetDevice(Device& d, const char* what, const std::string& state, const std::string& error) {
  bool changed;
  {
    std::lock_guard lock(mu_);
    changed = d.state != state || (d.error.empty() && !error.empty());  // a device never reached is said once too
    if (d.state != state) d.since = NowIso();
    d.state = state, d.error = error;
  }
  if (!changed) return;  // said once per change, not once per retry
  const nlohmann::json fields = {{"station", cfg_.name}, {"device", what}, {"state", state}, {"error", error}};
  if (state == "connected") log::Info("station_device", "station " + cfg_.name + ": " + what + " connected", fields);
  else log::Warn("station_device", "station " + cfg_.name + ": " + what + " " + state + ": " + error, fields);
}

bool Station::EnsureCamera() {
  if (camera_) return true;
  if (Clock::now() < camera_retry_at_) return false;
  auto cam = Camera::Open(cfg_.camera, cfg_.trigger);
  if (!cam.ok()) {
    std::string state;
    {
      std::lock_guard lock(mu_);
      state = camera_state_.state == "connected" ? "lost" : camera_state_.state;
    }
    SetDevice(camera_state_, "camera", state, cam.status().message() + " (tried again, at least every 5 s)");
    camera_retry_at_ = Clock::now() + camera_backoff_;
    camera_backoff_ = std::min(camera_backoff_ * 2, kMaxBackoff);
    return false;
  }
  camera_ = std::move(*cam);
  camera_backoff_ = std::chrono::milliseconds(250);
  {
    std::lock_guard lock(mu_);
    packet_size_ = camera_->packet_size();
    camera_warning_ = camera_->buffer_warning();
  }
  SetDevice(camera_state_, "camera", "connected", "");
  if (!camera_->buffer_warning().empty())
    log::Warn("station_camera_buffer", "station " + cfg_.name + ": camera " + camera_->device_id() + ": " + camera_->buffer_warning(),
              {{"station", cfg_.name}});
  return true;
}

void Station::CameraLost(const std::string& why) {
  camera_.reset();
  silent_triggers_ = 0;  // the camera opened next starts afresh
  {
    std::lock_guard lock(mu_);
    ++counts_.camera_losses;
  }
  SetDevice(camera_state_, "camera", "lost", why);
  camera_retry_at_ = Clock::now() + camera_backoff_;
}

std::optional<Clock::time_point> Station::NextTrigger(uint16_t* part_id) {
  if (cfg_.trigger == TriggerSource::kPlc) {
    auto t = plc_->TakeTrigger();
    if (!t.ok()) {
      SetDevice(plc_state_, "PLC", "unreachable", t.status().message());
      SleepFor(std::chrono::milliseconds(500));  // a PLC away is asked twice a second
      return std::nullopt;
    }
    SetDevice(plc_state_, "PLC", "connected", "");
    if (!t->has_value()) {
      SleepFor(std::chrono::milliseconds(plc_->config().poll_ms));
      return std::nullopt;
    }
    *part_id = **t;
    return Clock::now();
  }
  std::unique_lock lock(mu_);
  if (cfg_.software_trigger_hz > 0) {  // a steady beat; one that fell behind starts again from now
    const auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / cfg_.software_trigger_hz));
    if (next_tick_ < Clock::now() - period) next_tick_ = Clock::now();
    if (cv_.wait_until(lock, next_tick_, [&] { return stop_; })) return std::nullopt;
    next_tick_ += period;
    return Clock::now();
  }
  cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop_ || fire_requests_ > 0; });
  if (stop_ || fire_requests_ == 0) return std::nullopt;
  --fire_requests_;
  return Clock::now();
}

void Station::Push(Part p) {
  {
    std::lock_guard lock(mu_);
    if (!p.frame.empty()) ++frames_waiting_;
    parts_.push_back(std::make_unique<Part>(std::move(p)));
  }
  cv_.notify_all();
}

void Station::Overrun(Part& p, int waiting, const std::string& what) const {
  p.error = "overrun: " + std::to_string(waiting) + " part(s) were already waiting for the engine (queue " + std::to_string(cfg_.queue) +
            "); " + what;
  p.error_kind = "overrun";
}

void Station::AcquireLoop() {
  int64_t seq = 0;
  auto idle_since = Clock::now();
  if (plc_ && cfg_.trigger != TriggerSource::kPlc) {  // results only: the PLC's state is known from the start all the same
    const Status reached = plc_->Reach();
    SetDevice(plc_state_, "PLC", reached.ok() ? "connected" : "unreachable", reached.message());
  }
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stop_) break;
    }
    const bool have_camera = EnsureCamera();
    Part p;
    if (cfg_.trigger == TriggerSource::kLine0) {  // the camera's own input: a frame is the trigger
      if (!have_camera) {
        SleepFor(std::chrono::milliseconds(100));
        continue;
      }
      Camera::Times t;
      auto f = camera_->Grab(200, false, &t);
      if (!f.ok() && f.status().code() == Code::kUnavailable) {
        if (Clock::now() - idle_since > std::chrono::seconds(2)) {  // quiet: is the camera still there?
          idle_since = Clock::now();
          if (!camera_->Alive()) CameraLost("the camera stopped answering");
        }
        continue;
      }
      idle_since = Clock::now();
      p.trigger = Clock::now() - std::chrono::microseconds(int64_t(t.convert_ms * 1000));
      p.convert_ms = t.convert_ms;
      if (f.ok()) p.frame = std::move(*f);
      else p.error = f.status().message(), p.error_kind = "incomplete";
    } else {
      auto at = NextTrigger(&p.part_id);
      if (!at) continue;
      p.trigger = *at;
      int waiting;
      {
        std::lock_guard lock(mu_);
        waiting = frames_waiting_;
      }
      if (waiting >= cfg_.queue) {  // never a silent drop: the part gets an error result, in its turn
        Overrun(p, waiting, "this part was not photographed");
      } else if (!have_camera) {
        std::lock_guard lock(mu_);
        p.error = "the camera is not connected: " + camera_state_.error;
        p.error_kind = "camera";
      } else {
        Camera::Times t;
        auto f = camera_->Grab(cfg_.camera.timeout_ms, true, &t);
        p.acquire_ms = t.acquire_ms, p.convert_ms = t.convert_ms;
        if (f.ok()) {
          p.frame = std::move(*f);
          silent_triggers_ = 0;
        } else {
          p.error = f.status().message();
          p.error_kind = f.status().code() == Code::kCorrupt ? "incomplete" : "camera";
          if (p.error_kind == "camera") {
            if (!camera_->Alive()) {
              CameraLost(f.status().message());
            } else if (++silent_triggers_ >= kSilentTriggersBeforeReopen) {
              // The camera answers but its frames never come (a stream that died): open it again
              // rather than fail every part from now on.
              CameraLost("no frame for " + std::to_string(kSilentTriggersBeforeReopen) +
                         " triggers in a row although the camera answers: opening it again");
            }
          }
        }
      }
    }
    if (cfg_.trigger == TriggerSource::kLine0 && !p.frame.empty()) {
      std::lock_guard lock(mu_);
      if (frames_waiting_ >= cfg_.queue) {
        Overrun(p, frames_waiting_, "this frame was not inspected");
        p.frame = cv::Mat();
      }
    }
    p.seq = ++seq;
    Push(std::move(p));
  }
  {
    std::lock_guard lock(mu_);
    acquiring_done_ = true;
  }
  cv_.notify_all();
  camera_.reset();
}

void Station::InspectLoop() {
  for (;;) {
    std::unique_ptr<Part> p;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return !parts_.empty() || acquiring_done_; });
      if (parts_.empty()) {
        if (acquiring_done_) break;
        lock.unlock();
        (void)svc_.Prepare(cfg_.product);  // idle: a changed product's engine is rebuilt before its next part
        continue;
      }
      p = std::move(parts_.front());
      parts_.pop_front();
      if (!p->frame.empty()) --frames_waiting_;
    }
    const auto start = Clock::now();
    p->queue_ms = std::max(0.0, Ms(start - p->trigger) - p->acquire_ms - p->convert_ms);
    auto& r = p->inspection.result;
    if (p->error.empty()) {
      Image image;
      image.bgr = p->frame;
      auto judged = svc_.InspectNow(cfg_.product, image);
      if (judged.ok()) p->inspection = std::move(judged->inspection), p->version = judged->version;
      else r.error = judged.status().message();
    } else {
      r.error = p->error;
    }
    r.image_path = cfg_.name + "-" + std::to_string(p->seq) + ".png";
    const auto judged_at = Clock::now();
    p->engine_ms = Ms(judged_at - start);
    if (plc_) {
      const PlcVerdict v = r.error ? PlcVerdict::kError : r.verdict == "NOK" ? PlcVerdict::kNok : PlcVerdict::kOk;
      const Status w = plc_->WriteResult(v, r.error ? 0 : r.score, p->part_id);
      p->plc = w.ok() ? "delivered" : "undelivered";
      if (w.ok()) p->plc_counter = plc_->counter(), SetDevice(plc_state_, "PLC", "connected", "");
      else SetDevice(plc_state_, "PLC", "unreachable", w.message());
    }
    const auto done = Clock::now();
    p->plc_ms = Ms(done - judged_at);
    p->total_ms = Ms(done - p->trigger);
    {
      std::lock_guard lock(mu_);
      ++counts_.parts;
      if (r.error) ++counts_.errors;
      else ++(r.verdict == "NOK" ? counts_.nok : counts_.ok);
      if (p->error_kind == "overrun") ++counts_.overruns;
      if (p->error_kind == "incomplete") ++counts_.incomplete;
      if (p->plc == "undelivered") ++counts_.undelivered;
      if (!p->frame.empty()) last_frame_ = p->frame;
      last_ = {{"part", p->seq}, {"part_id", p->part_id}, {"verdict", r.error ? "error" : r.verdict}, {"score", r.error ? 0 : r.score},
               {"error", r.error ? *r.error : ""}, {"plc", p->plc}, {"at", NowIso()}, {"inspection", nullptr}};
      if (p->error.empty() && !r.error) {  // the stages of parts that were photographed and judged
        for (auto [stage, ms] : {std::pair{"acquire", p->acquire_ms}, {"convert", p->convert_ms}, {"queue", p->queue_ms},
                                 {"engine", p->engine_ms}, {"plc", p->plc_ms}, {"total", p->total_ms}}) {
          auto& v = times_[stage];
          v.push_back(ms);
          if (v.size() > kTimesKept) v.pop_front();
        }
      }
      records_.push_back(std::move(p));
    }
    cv_.notify_all();
  }
  {
    std::lock_guard lock(mu_);
    inspecting_done_ = true;
  }
  cv_.notify_all();
}

void Station::RecordLoop() {
  for (;;) {
    std::unique_ptr<Part> p;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !records_.empty() || inspecting_done_; });
      if (records_.empty()) break;
      p = std::move(records_.front());
      records_.pop_front();
    }
    NewInspection n;
    n.product = cfg_.product;
    n.station = cfg_.name;
    n.image_name = p->inspection.result.image_path;
    n.part_id = cfg_.plc && cfg_.plc->part_id_register >= 0 ? std::to_string(p->part_id) : std::to_string(p->seq);
    n.metadata = {{"source", "station"},
                  {"trigger", TriggerName(cfg_.trigger)},
                  {"station_part", p->seq},
                  {"plc", p->plc},
                  {"timing_ms",
                   {{"acquire", p->acquire_ms}, {"convert", p->convert_ms}, {"queue", p->queue_ms}, {"engine", p->engine_ms},
                    {"plc", p->plc_ms}, {"total", p->total_ms}}}};
    if (p->plc_counter >= 0) n.metadata["plc_counter"] = p->plc_counter;
    if (!p->error_kind.empty()) n.metadata["error_kind"] = p->error_kind;
    Image image;
    image.bgr = p->frame;
    auto id = svc_.Record(n, image, p->inspection, p->version);
    if (!id.ok()) {
      log::Error("station_not_stored", "station " + cfg_.name + ": part " + std::to_string(p->seq) + " (" +
                                           (p->inspection.result.error ? "error" : p->inspection.result.verdict) +
                                           ", sent to the PLC: " + p->plc + ") could not be stored: " + id.status().message(),
                 {{"station", cfg_.name}, {"part", p->seq}, {"error", id.status().message()}});
      continue;
    }
    std::lock_guard lock(mu_);
    if (last_.is_object() && last_["part"] == p->seq) last_["inspection"] = *id;
  }
}

namespace {

nlohmann::json Quantiles(std::deque<double> v) {
  if (v.empty()) return nullptr;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, size_t(q * double(v.size())))]; };
  return {{"p50", at(0.5)}, {"p99", at(0.99)}, {"count", v.size()}};
}

}  // namespace

nlohmann::json Station::State() {
  std::lock_guard lock(mu_);
  nlohmann::json times = nlohmann::json::object();
  for (const auto& [stage, v] : times_) times[stage] = Quantiles(v);
  nlohmann::json plc = {{"state", plc_state_.state}, {"error", plc_state_.error}, {"since", plc_state_.since}};
  if (cfg_.plc) plc["address"] = cfg_.plc->host + ":" + std::to_string(cfg_.plc->port);
  return {{"name", cfg_.name},
          {"product", cfg_.product},
          {"trigger", TriggerName(cfg_.trigger)},
          {"camera",
           {{"state", camera_state_.state}, {"error", camera_state_.error}, {"since", camera_state_.since},
            {"id", cfg_.camera.id.empty() ? "first found" : cfg_.camera.id}, {"losses", counts_.camera_losses},
            {"packet_size", packet_size_}, {"warning", camera_warning_}}},
          {"plc", plc},
          {"counters",
           {{"parts", counts_.parts}, {"ok", counts_.ok}, {"nok", counts_.nok}, {"errors", counts_.errors}, {"overruns", counts_.overruns},
            {"incomplete_frames", counts_.incomplete}, {"undelivered", counts_.undelivered}}},
          {"waiting", frames_waiting_},
          {"queue", cfg_.queue},
          {"last", last_},
          {"latency_ms", times}};
}

std::string Station::LastFrameJpeg() {
  cv::Mat frame;
  {
    std::lock_guard lock(mu_);
    frame = last_frame_;  // frames are never written after they are taken: sharing is safe
  }
  if (frame.empty()) return "";
  const double scale = std::min(1.0, 640.0 / std::max(frame.cols, frame.rows));
  cv::Mat small;
  if (scale < 1) cv::resize(frame, small, {}, scale, scale, cv::INTER_AREA);
  else small = frame;
  std::vector<uint8_t> jpg;
  cv::imencode(".jpg", small, jpg, {cv::IMWRITE_JPEG_QUALITY, 80});
  return std::string(jpg.begin(), jpg.end());
}

void Station::WriteMetrics(std::ostream& m) {
  std::lock_guard lock(mu_);
  const std::string st = "station=\"" + cfg_.name + "\"";  // the name is checked: letters, digits, - _ .
  m << "# HELP zeroqc_station_parts_total Parts the station answered, by result.\n# TYPE zeroqc_station_parts_total counter\n";
  for (auto [k, v] : {std::pair{"ok", counts_.ok}, {"nok", counts_.nok}, {"error", counts_.errors}})
    m << "zeroqc_station_parts_total{" << st << ",result=\"" << k << "\"} " << v << "\n";
  for (auto [name, help, v] : {std::tuple{"overruns", "Triggers answered with an overrun error (the queue was full).", counts_.overruns},
                               {"incomplete_frames", "Frames that arrived incomplete (lost packets) and were not inspected.", counts_.incomplete},
                               {"undelivered", "Results the PLC could not be given (they are stored, marked undelivered).", counts_.undelivered},
                               {"camera_losses", "Times the camera stopped answering.", counts_.camera_losses}})
    m << "# HELP zeroqc_station_" << name << "_total " << help << "\n# TYPE zeroqc_station_" << name << "_total counter\nzeroqc_station_"
      << name << "_total{" << st << "} " << v << "\n";
  m << "# HELP zeroqc_station_camera_up 1 while the camera is connected.\n# TYPE zeroqc_station_camera_up gauge\nzeroqc_station_camera_up{"
    << st << "} " << (camera_state_.state == "connected") << "\n";
  if (cfg_.plc)
    m << "# HELP zeroqc_station_plc_up 1 while the PLC answers.\n# TYPE zeroqc_station_plc_up gauge\nzeroqc_station_plc_up{" << st << "} "
      << (plc_state_.state == "connected") << "\n";
  m << "# HELP zeroqc_station_stage_seconds Trigger-to-result time and its stages over the last 1024 judged parts.\n"
       "# TYPE zeroqc_station_stage_seconds summary\n";
  for (const auto& [stage, v] : times_) {
    auto q = Quantiles(v);
    if (q.is_null()) continue;
    for (const char* k : {"p50", "p99"})
      m << "zeroqc_station_stage_seconds{" << st << ",stage=\"" << stage << "\",quantile=\"" << (k[1] == '5' ? "0.5" : "0.99") << "\"} "
        << q[k].get<double>() / 1000 << "\n";
  }
}

}  // namespace zeroqc
