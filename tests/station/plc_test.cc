// The station's PLC client against a real Modbus TCP server (libmodbus, in this process, on a free
// loopback port) standing in for the PLC: the trigger handshake, results with a counter stepping by
// one, a PLC restart, and a PLC that is gone.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <thread>

#include <gtest/gtest.h>
#include <modbus/modbus.h>

#include "station/plc.h"

namespace zeroqc {
namespace {

int FreePort() {
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

// A Modbus TCP server with 256 coils and 256 holding registers, serving one client at a time until
// stopped. The registers live in `map`, shared with the test (the PLC's memory).
class FakePlc {
 public:
  explicit FakePlc(int port, modbus_mapping_t* map) : port_(port), map_(map) { Start(); }
  ~FakePlc() { Stop(); }
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
        if (n > 0) modbus_reply(ctx_, query, n, map_);
      }
      close(client_);
      client_ = -1;
    }
  }
  int port_;
  modbus_mapping_t* map_;
  modbus_t* ctx_ = nullptr;
  int listen_ = -1;
  std::atomic<int> client_{-1};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

struct Memory {
  Memory() : map(modbus_mapping_new(256, 0, 256, 0)) {}
  ~Memory() { modbus_mapping_free(map); }
  modbus_mapping_t* map;
};

PlcConfig Config(int port) {
  PlcConfig c;
  c.port = port;
  c.trigger_coil = 3;
  c.part_id_register = 10;
  c.result_register = 100;
  c.timeout_ms = 300;
  return c;
}

TEST(Plc, TriggerHandshakeAndResultsWithACounterSteppingByOne) {
  Memory mem;
  mem.map->tab_registers[103] = 41;  // the counter the PLC holds from an earlier run
  const int port = FreePort();
  FakePlc server(port, mem.map);
  auto plc = Plc::Connect(Config(port));
  ASSERT_TRUE(plc.ok()) << plc.status().message();
  EXPECT_EQ((*plc)->counter(), 41) << "a restarted station counts on";

  auto none = (*plc)->TakeTrigger();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value()) << "no part waiting";

  const struct {
    uint16_t id;
    PlcVerdict verdict;
    double score;
  } parts[] = {{501, PlcVerdict::kOk, 0.2314}, {502, PlcVerdict::kNok, 0.5}, {503, PlcVerdict::kError, NAN}};
  uint16_t expected = 41;
  for (const auto& p : parts) {
    mem.map->tab_registers[10] = p.id;  // the PLC writes the part id, then raises the trigger
    mem.map->tab_bits[3] = 1;
    auto t = (*plc)->TakeTrigger();
    ASSERT_TRUE(t.ok()) << t.status().message();
    ASSERT_TRUE(t->has_value());
    EXPECT_EQ(**t, p.id);
    EXPECT_EQ(mem.map->tab_bits[3], 0) << "zeroqc clears the trigger when it takes the part";
    ASSERT_TRUE((*plc)->WriteResult(p.verdict, p.score, **t).ok());
    EXPECT_EQ(mem.map->tab_registers[100], uint16_t(p.verdict));
    EXPECT_EQ(mem.map->tab_registers[101], std::isnan(p.score) ? 0 : uint16_t(std::lround(p.score * 1000)));
    EXPECT_EQ(mem.map->tab_registers[102], p.id);
    EXPECT_EQ(mem.map->tab_registers[103], ++expected) << "the counter steps by one per result";
  }
}

TEST(Plc, APlcRestartIsReconnectedAndAGoneOneIsUnavailable) {
  Memory mem;
  const int port = FreePort();
  auto server = std::make_unique<FakePlc>(port, mem.map);
  auto plc = Plc::Connect(Config(port));
  ASSERT_TRUE(plc.ok()) << plc.status().message();
  ASSERT_TRUE((*plc)->WriteResult(PlcVerdict::kOk, 0.1, 1).ok());
  server->Stop();
  server->Start();  // the PLC restarts: the old connection is dead
  ASSERT_TRUE((*plc)->WriteResult(PlcVerdict::kNok, 0.9, 2).ok()) << "reconnected once";
  EXPECT_EQ(mem.map->tab_registers[103], 2);
  server.reset();  // and now it is gone
  const Status gone = (*plc)->WriteResult(PlcVerdict::kOk, 0.1, 3);
  EXPECT_EQ(gone.code(), Code::kUnavailable);
  EXPECT_NE(gone.message().find("127.0.0.1:" + std::to_string(port)), std::string::npos) << gone.message();
  EXPECT_EQ((*plc)->counter(), 2) << "a result not delivered does not count";
  auto t = (*plc)->TakeTrigger();
  EXPECT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kUnavailable);
  EXPECT_FALSE(Plc::Connect(Config(port)).ok());
}

}  // namespace
}  // namespace zeroqc
