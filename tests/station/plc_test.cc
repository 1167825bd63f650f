// The station's PLC client against a real Modbus TCP server (libmodbus, in this process, on a free
// loopback port) standing in for the PLC: the trigger handshake, results with a counter stepping by
// one, a PLC restart, and a PLC that is gone.
#include <cmath>

#include <gtest/gtest.h>

#include "station/fakes.h"
#include "station/plc.h"

namespace zeroqc {
namespace {

using testing::FakePlc;
using testing::FreePort;

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
  const int port = FreePort();
  FakePlc server(port);
  modbus_mapping_t* map = server.map();  // read between requests: this test is the only client
  map->tab_registers[103] = 41;  // the counter the PLC holds from an earlier run
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
    map->tab_registers[10] = p.id;  // the PLC writes the part id, then raises the trigger
    map->tab_bits[3] = 1;
    auto t = (*plc)->TakeTrigger();
    ASSERT_TRUE(t.ok()) << t.status().message();
    ASSERT_TRUE(t->has_value());
    EXPECT_EQ(**t, p.id);
    EXPECT_EQ(map->tab_bits[3], 0) << "zeroqc clears the trigger when it takes the part";
    ASSERT_TRUE((*plc)->WriteResult(p.verdict, p.score, **t).ok());
    EXPECT_EQ(map->tab_registers[100], uint16_t(p.verdict));
    EXPECT_EQ(map->tab_registers[101], std::isnan(p.score) ? 0 : uint16_t(std::lround(p.score * 1000)));
    EXPECT_EQ(map->tab_registers[102], p.id);
    EXPECT_EQ(map->tab_registers[103], ++expected) << "the counter steps by one per result";
  }
}

TEST(Plc, APlcRestartIsReconnectedAndAGoneOneIsUnavailable) {
  const int port = FreePort();
  auto server = std::make_unique<FakePlc>(port);
  modbus_mapping_t* map = server->map();
  auto plc = Plc::Connect(Config(port));
  ASSERT_TRUE(plc.ok()) << plc.status().message();
  ASSERT_TRUE((*plc)->WriteResult(PlcVerdict::kOk, 0.1, 1).ok());
  server->Stop();
  server->Start();  // the PLC restarts: the old connection is dead
  ASSERT_TRUE((*plc)->WriteResult(PlcVerdict::kNok, 0.9, 2).ok()) << "reconnected once";
  EXPECT_EQ(map->tab_registers[103], 2);
  server->Stop();  // and now it is gone
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
