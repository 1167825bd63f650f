#include "station/plc.h"

#include <algorithm>
#include <cerrno>
#include <cmath>

#include <modbus/modbus.h>

namespace zeroqc {
namespace {

Status Unreachable(const PlcConfig& c, const std::string& what) {
  return Unavailable("PLC " + c.host + ":" + std::to_string(c.port) + ": " + what + ": " + modbus_strerror(errno));
}

}  // namespace

StatusOr<std::unique_ptr<Plc>> Plc::Connect(const PlcConfig& config) {
  std::unique_ptr<Plc> plc(new Plc(config));
  std::lock_guard lock(plc->mu_);
  ZQ_RETURN_IF_ERROR(plc->Open());
  return plc;
}

Plc::~Plc() { Close(); }

Status Plc::Reach() {
  std::lock_guard lock(mu_);
  return ctx_ ? Status::Ok() : Open();
}

Status Plc::Open() {
  Close();
  ctx_ = modbus_new_tcp(cfg_.host.c_str(), cfg_.port);
  if (!ctx_) return InvalidArgument("PLC address " + cfg_.host + ":" + std::to_string(cfg_.port) + ": " + modbus_strerror(errno));
  modbus_set_slave(ctx_, cfg_.unit);
  modbus_set_response_timeout(ctx_, uint32_t(cfg_.timeout_ms / 1000), uint32_t(cfg_.timeout_ms % 1000) * 1000);
  if (modbus_connect(ctx_) != 0) {
    Status s = Unreachable(cfg_, "connect");
    Close();
    return s;
  }
  // Counting on from the PLC's own counter: a restarted station (or PLC) never repeats a value the
  // PLC has just seen, so a new result always changes it.
  uint16_t regs[4];
  if (modbus_read_registers(ctx_, cfg_.result_register, 4, regs) != 4) {
    Status s = Unreachable(cfg_, "reading the result registers " + std::to_string(cfg_.result_register) + "-" +
                                     std::to_string(cfg_.result_register + 3));
    Close();
    return s;
  }
  counter_ = regs[3];
  return Status::Ok();
}

void Plc::Close() {
  if (!ctx_) return;
  modbus_close(ctx_);
  modbus_free(ctx_);
  ctx_ = nullptr;
}

StatusOr<std::optional<uint16_t>> Plc::TakeTrigger() {
  std::lock_guard lock(mu_);
  if (!ctx_)
    if (Status s = Open(); !s.ok()) return s;
  uint8_t coil = 0;
  if (modbus_read_bits(ctx_, cfg_.trigger_coil, 1, &coil) != 1) {
    Status s = Unreachable(cfg_, "reading the trigger coil " + std::to_string(cfg_.trigger_coil));
    Close();  // the next call reconnects
    return s;
  }
  if (!coil) return std::optional<uint16_t>();
  uint16_t id = 0;
  if (cfg_.part_id_register >= 0 && modbus_read_registers(ctx_, cfg_.part_id_register, 1, &id) != 1) {
    Status s = Unreachable(cfg_, "reading the part id register " + std::to_string(cfg_.part_id_register));
    Close();
    return s;
  }
  if (modbus_write_bit(ctx_, cfg_.trigger_coil, 0) != 1) {
    Status s = Unreachable(cfg_, "clearing the trigger coil");
    Close();
    return s;
  }
  return std::optional<uint16_t>(id);
}

Status Plc::WriteResult(PlcVerdict verdict, double score, uint16_t part_id) {
  std::lock_guard lock(mu_);
  const double thousandths = std::isfinite(score) ? std::round(score * 1000) : 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!ctx_ && !Open().ok()) continue;
    const uint16_t next = uint16_t(counter_ + 1);
    const uint16_t regs[4] = {uint16_t(verdict), uint16_t(std::clamp(thousandths, 0.0, 65535.0)), part_id, next};
    if (modbus_write_registers(ctx_, cfg_.result_register, 4, regs) == 4) {
      counter_ = next;
      return Status::Ok();
    }
    Close();  // a PLC restart drops the connection: reopen once
  }
  return Unreachable(cfg_, "writing the result");
}

}  // namespace zeroqc
