// The PLC side of a station, over Modbus TCP (zeroqc is the client). The PLC raises a trigger coil
// (after writing the part id, if it has one); zeroqc clears the coil when it takes the part, and
// answers with one "write multiple registers" request: verdict, score, part id, and a counter that
// steps by one per result, last, so that a new counter value means a whole new result.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/status.h"

struct _modbus;

namespace zeroqc {

struct PlcConfig {
  std::string host = "127.0.0.1";
  int port = 502;
  int unit = 1;               // Modbus unit (slave) id
  int trigger_coil = 0;       // coil address the PLC sets to 1 for a part
  int part_id_register = -1;  // holding register with the part's id (-1: none)
  int result_register = 100;  // first of 4 holding registers: verdict, score, part id, counter
  int timeout_ms = 500;       // per request
  int poll_ms = 5;            // how often the trigger coil is read
};

// The verdict register's values.
enum class PlcVerdict : uint16_t { kNone = 0, kOk = 1, kNok = 2, kError = 3 };

class Plc {
 public:
  // Connects and reads the counter the PLC holds, so that a restarted station counts on from it.
  static StatusOr<std::unique_ptr<Plc>> Connect(const PlcConfig& config);
  // Not connected yet: the first request connects (a station starts while its PLC is away).
  static std::unique_ptr<Plc> Later(const PlcConfig& config) { return std::unique_ptr<Plc>(new Plc(config)); }
  ~Plc();
  // Connects now if not connected (and reads the counter): kUnavailable when the PLC cannot be reached.
  Status Reach();

  // The trigger coil: when set, clears it and gives the part id (0 without a part-id register);
  // nullopt when no part is waiting. kUnavailable when the PLC cannot be reached.
  StatusOr<std::optional<uint16_t>> TakeTrigger();
  // Score as thousandths (0-65535), then the counter + 1, in one request. A broken connection is
  // reopened once (a PLC restart); kUnavailable when that fails too.
  Status WriteResult(PlcVerdict verdict, double score, uint16_t part_id);
  uint16_t counter() {
    std::lock_guard lock(mu_);
    return counter_;
  }
  const PlcConfig& config() const { return cfg_; }

 private:
  explicit Plc(const PlcConfig& c) : cfg_(c) {}
  Status Open();  // connects and reads the PLC's counter
  void Close();

  PlcConfig cfg_;
  _modbus* ctx_ = nullptr;
  uint16_t counter_ = 0;
  std::mutex mu_;  // one request at a time on the connection
};

}  // namespace zeroqc
