// The station's trigger-to-result time as the PLC sees it: a real `zeroqc serve --station` judges
// parts from Aravis's fake GigE camera (in this process, on 127.0.0.1) on the trigger of a libmodbus
// server standing in for the PLC, with the default engine and 16 toothbrush references. One part at
// a time, as on a line: the PLC writes a part id, raises the trigger coil and waits for the counter.
// Prints the PLC's view (p50, p90, p99) and the station's own breakdown of each part (acquisition,
// frame conversion, queue, engine, PLC write) from the stored inspections, and what the station adds
// to the engine's time.
//
//   build/bench/station_latency [--parts 200] [--side 1024] [--format RGB8|BayerRG8|Mono8] [--packet-size 8000] [--gap-ms 20] [--poll-ms 5]
#include <signal.h>
#include <sys/wait.h>

#include <httplib.h>

#include <cstring>
#include <fstream>
#include <iostream>

#include <opencv2/imgcodecs.hpp>

#include "server/serve_process.h"
#include "station/fakes.h"

namespace zeroqc {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(q * double(v.size())))];
}

int Run(int parts, int side, const std::string& format, int packet_size_asked, int gap_ms, int poll_ms) {
  const fs::path shared = testing::Datasets() / "mvtec-toothbrush";
  std::vector<cv::Mat> photos;
  for (const auto& e : fs::directory_iterator(shared / "test/defective")) photos.push_back(cv::imread(e.path().string()));
  for (const auto& e : fs::directory_iterator(shared / "test/good")) photos.push_back(cv::imread(e.path().string()));
  std::atomic<size_t> shown{0};
  testing::FakeGigECamera camera([&] { return photos[shown % photos.size()]; }, side, side);
  camera.TriggerPollHz(1000);  // the frame starts within 1 ms of the trigger, as a real camera's
  const int plc_port = testing::FreePort();
  testing::FakePlc plc(plc_port);
  plc.RecordResultsAt(100);

  const fs::path dir = fs::temp_directory_path() / ("zeroqc-station-bench-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto key = testing::Zeroqc("keys create --scope admin --name bench --data " + (dir / "data").string());
  if (key.status != 0) return std::cerr << key.err, 1;
  const std::string token = key.out.substr(0, key.out.find('\n'));
  std::ofstream(dir / "station.json") << nlohmann::json{
      {"name", "bench"},
      {"product", "brush"},
      {"camera", {{"id", "127.0.0.1"}, {"pixel_format", format}, {"roi", {{"x", 0}, {"y", 0}, {"width", side}, {"height", side}}}}},
      {"trigger", "plc"},
      {"plc", {{"host", "127.0.0.1"}, {"port", plc_port}, {"trigger_coil", 0}, {"part_id_register", 10}, {"result_register", 100}, {"poll_ms", poll_ms}}}};
  if (packet_size_asked > 0) {  // the station file again, with the camera's packet size set
    auto j = nlohmann::json::parse(std::ifstream(dir / "station.json"));
    j["camera"]["packet_size"] = packet_size_asked;
    std::ofstream(dir / "station.json") << j;
  }
  ServerProcess server = Spawn(dir / "data", {"--station", (dir / "station.json").string(), "--log-format", "json"});
  if (server.port <= 0) return std::cerr << "serve did not start\n", 1;
  httplib::Client c("127.0.0.1", server.port);
  c.set_bearer_token_auth(token.c_str());
  c.set_read_timeout(120);
  (void)c.Post("/v1/products", R"({"name":"brush","settings":{"line_window":0}})", "application/json");
  httplib::MultipartFormDataItems refs;
  for (int i = 0; i < 16; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "%03d.png", i * 3);
    std::ifstream in(shared / "train/good" / name, std::ios::binary);
    refs.push_back({"image", std::string((std::istreambuf_iterator<char>(in)), {}), name, "image/png"});
  }
  if (auto r = c.Post("/v1/products/brush/references", refs); !r || r->status != 201) return std::cerr << "references refused\n", 1;

  // One part: the PLC's own clock from raising the coil to seeing the new counter.
  auto part = [&](uint16_t id) -> double {
    const size_t before = plc.results().size();
    const auto t0 = Clock::now();
    plc.With([&](modbus_mapping_t& m) {
      m.tab_registers[10] = id;
      m.tab_bits[0] = 1;
      return 0;
    });
    if (!plc.WaitResults(before + 1, std::chrono::seconds(120))) return -1;
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  for (int i = 0; i < 5; ++i) part(uint16_t(i)), ++shown;  // the engine built, caches warm: not counted
  std::vector<double> plc_ms;
  for (int i = 0; i < parts; ++i) {
    const double ms = part(uint16_t(1000 + i));
    if (ms < 0) return std::cerr << "no result for part " << i << "\n", 1;
    plc_ms.push_back(ms);
    ++shown;
    std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms));  // the next part arrives
  }
  // The station's own breakdown, from the stored parts.
  std::map<std::string, std::vector<double>> stage;
  std::vector<double> added;
  for (std::string cursor; (int)stage["total"].size() < parts;) {
    auto r = c.Get(("/v1/inspections?limit=500&product=brush" + (cursor.empty() ? "" : "&cursor=" + cursor)).c_str());
    if (!r || r->status != 200) return std::cerr << "listing failed\n", 1;
    const auto j = nlohmann::json::parse(r->body);
    for (const auto& it : j["items"]) {
      if (it["metadata"].value("station_part", 0) <= 5 || (int)stage["total"].size() >= parts) continue;
      const auto& t = it["metadata"]["timing_ms"];
      for (const auto& [k, v] : t.items()) stage[k].push_back(v.get<double>());
      added.push_back(t["total"].get<double>() - t["engine"].get<double>());
    }
    if (j["next_cursor"].is_null()) break;
    cursor = j["next_cursor"].is_string() ? j["next_cursor"].get<std::string>() : std::to_string(j["next_cursor"].get<int64_t>());
  }
  int packet_size = 0;
  if (auto st = c.Get("/v1/station"); st && st->status == 200)
    packet_size = nlohmann::json::parse(st->body)["camera"].value("packet_size", 0);
  kill(server.pid, SIGTERM);
  waitpid(server.pid, nullptr, 0);
  fs::remove_all(dir);

  std::printf("station latency: %d parts, %dx%d %s frames (GigE Vision packets of %d bytes), 16 references, default engine\n\n", parts,
              side, side, format.c_str(), packet_size);
  std::printf("| stage | p50 ms | p90 ms | p99 ms |\n|---|---|---|---|\n");
  auto row = [](const char* name, const std::vector<double>& v) {
    std::printf("| %s | %.1f | %.1f | %.1f |\n", name, Quantile(v, 0.5), Quantile(v, 0.9), Quantile(v, 0.99));
  };
  row("PLC: trigger coil raised -> new counter seen", plc_ms);
  for (const char* k : {"acquire", "convert", "queue", "engine", "plc", "total"})
    row((std::string("station: ") + k).c_str(), stage[k]);
  row("station adds to the engine (total - engine)", added);
  return 0;
}

}  // namespace
}  // namespace zeroqc

int main(int argc, char** argv) {
  int parts = 200, side = 1024, packet_size = 0, gap_ms = 20, poll_ms = 5;
  std::string format = "RGB8";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--parts")) parts = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--side")) side = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--format")) format = argv[i + 1];
    else if (!std::strcmp(argv[i], "--packet-size")) packet_size = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--gap-ms")) gap_ms = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--poll-ms")) poll_ms = std::atoi(argv[i + 1]);
    else return std::cerr << "usage: station_latency [--parts N] [--side PX] [--format RGB8|BayerRG8|Mono8] [--packet-size BYTES] [--gap-ms MS] [--poll-ms MS]\n", 2;
  }
  if (parts < 1 || side < 64) return std::cerr << "--parts >= 1, --side >= 64\n", 2;
  return zeroqc::Run(parts, side, format, packet_size, gap_ms, poll_ms);
}
