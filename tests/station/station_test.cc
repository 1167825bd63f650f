// `zeroqc serve --station` end to end: a real serve process takes its parts from Aravis's fake
// GigE Vision camera (in this process, on 127.0.0.1, showing real toothbrush photos) on the trigger
// of a libmodbus server standing in for the PLC, and answers the PLC over Modbus TCP. This test is
// the PLC: it writes a part id, raises the trigger coil, and reads every result it is sent.
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <httplib.h>

#include <fstream>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "server/serve_process.h"
#include "server/store.h"
#include "station/fakes.h"

namespace zeroqc {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using testing::FakeGigECamera;
using testing::FakePlc;

constexpr int kCoil = 3, kPartIdRegister = 10, kResultRegister = 100;
constexpr int kSide = 384;  // the camera's region: the station's frames are kSide x kSide RGB8

struct Photo {
  cv::Mat bgr;
  bool defective;
};

// Good and defective toothbrushes from the test split (the references come from the train split).
std::vector<Photo> Photos() {
  std::vector<Photo> v;
  const auto root = testing::Datasets() / "mvtec-toothbrush/test";
  for (const char* f : {"good/000.png", "good/005.png", "good/007.png", "good/010.png", "defective/000.png", "defective/005.png",
                        "defective/010.png", "defective/016.png"}) {
    v.push_back({cv::imread((root / f).string()), std::string(f).starts_with("defective")});
    EXPECT_FALSE(v.back().bgr.empty()) << f;
  }
  return v;
}

// The station's world: the camera, the PLC, and a serve process running the station file.
class Rig {
 public:
  // `side`: the camera's region (kSide x kSide unless a test needs frames of another size).
  explicit Rig(const std::string& trigger = "plc", int queue = 4, int side = kSide) : plc_port_(testing::FreePort()), plc_(plc_port_) {
    plc_.RecordResultsAt(kResultRegister);
    camera_ = std::make_unique<FakeGigECamera>([this] { return Scene(); }, side, side);
    dir_ = testing::TempDir();
    auto key = testing::Zeroqc("keys create --scope admin --name test --data " + (dir_ / "data").string());
    EXPECT_EQ(key.status, 0) << key.err;
    token_ = key.out.substr(0, key.out.find('\n'));
    station_file_ = dir_ / "station.json";
    std::ofstream(station_file_) << nlohmann::json{
        {"name", "line-1"},
        {"product", "brush"},
        {"camera", {{"id", "127.0.0.1"}, {"pixel_format", "RGB8"}, {"roi", {{"x", 0}, {"y", 0}, {"width", side}, {"height", side}}}}},
        {"trigger", trigger},
        {"queue", queue},
        {"plc",
         {{"host", "127.0.0.1"}, {"port", plc_port_}, {"trigger_coil", kCoil}, {"part_id_register", kPartIdRegister},
          {"result_register", kResultRegister}, {"timeout_ms", 300}, {"poll_ms", 2}}}};
  }
  ~Rig() {
    if (server_.pid > 0) {
      kill(server_.pid, SIGKILL);
      waitpid(server_.pid, nullptr, 0);
    }
  }

  // Starts serve with the station; the product gets 16 references and no line window (each part
  // judged by the references alone, so that its verdict is the photo's).
  // `in_child`: as Spawn's.
  void Start(const std::function<void()>& in_child = nullptr) {
    server_ = Spawn(dir_ / "data", {"--station", station_file_.string()}, in_child);
    ASSERT_GT(server_.port, 0);
    auto c = Client();
    ASSERT_EQ(c.Post("/v1/products", R"({"name":"brush","settings":{"line_window":0}})", "application/json")->status, 201);
    httplib::MultipartFormDataItems refs;
    const auto train = testing::Datasets() / "mvtec-toothbrush/train/good";
    for (int i = 0; i < 16; ++i) {
      char name[16];
      std::snprintf(name, sizeof name, "%03d.png", i * 3);
      std::ifstream in(train / name, std::ios::binary);
      refs.push_back({"image", std::string((std::istreambuf_iterator<char>(in)), {}), name, "image/png"});
    }
    ASSERT_EQ(c.Post("/v1/products/brush/references", refs)->status, 201);
    ASSERT_TRUE(WaitState([](const nlohmann::json& s) { return s["camera"]["state"] == "connected"; }, 30)) << State().dump();
  }

  httplib::Client Client() {
    httplib::Client c("127.0.0.1", server_.port);
    c.set_bearer_token_auth(token_.c_str());
    c.set_read_timeout(60);
    return c;
  }
  nlohmann::json State() {
    auto r = Client().Get("/v1/station");
    return r && r->status == 200 ? nlohmann::json::parse(r->body) : nlohmann::json();
  }
  bool WaitState(const std::function<bool(const nlohmann::json&)>& ok, int seconds) {
    for (auto until = Clock::now() + std::chrono::seconds(seconds); Clock::now() < until;) {
      auto s = State();
      if (s.is_object() && ok(s)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  // The PLC's side of one part: the camera will see `scene`; write the part id, raise the trigger.
  void SetScene(const cv::Mat& scene) {
    std::lock_guard lock(scene_mu_);
    scene_ = scene;
  }
  void Trigger(const cv::Mat& scene, uint16_t part_id) {
    SetScene(scene);
    plc_.With([&](modbus_mapping_t& m) {
      m.tab_registers[kPartIdRegister] = part_id;
      m.tab_bits[kCoil] = 1;
      return 0;
    });
  }
  // Waits until the station has taken the part (cleared the coil).
  bool Taken(int seconds = 10) {
    for (auto until = Clock::now() + std::chrono::seconds(seconds); Clock::now() < until;) {
      if (plc_.With([](modbus_mapping_t& m) { return m.tab_bits[kCoil] == 0; })) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }
  // Waits for the PLC to have received `n` results in all.
  std::vector<FakePlc::Result> Results(size_t n, int seconds = 120) {
    plc_.WaitResults(n, std::chrono::seconds(seconds));
    return plc_.results();
  }
  // One part, start to end: its result.
  FakePlc::Result Part(const cv::Mat& scene, uint16_t part_id) {
    const size_t before = plc_.results().size();
    Trigger(scene, part_id);
    auto r = Results(before + 1);
    EXPECT_GT(r.size(), before) << "no result for part " << part_id << ": " << State().dump();
    return r.size() > before ? r[before] : FakePlc::Result{};
  }

  FakePlc& plc() { return plc_; }
  FakeGigECamera& camera() { return *camera_; }
  ServerProcess& server() { return server_; }
  const fs::path& dir() const { return dir_; }

 private:
  cv::Mat Scene() {
    std::lock_guard lock(scene_mu_);
    return scene_;
  }
  int plc_port_;
  FakePlc plc_;
  std::unique_ptr<FakeGigECamera> camera_;
  std::mutex scene_mu_;
  cv::Mat scene_;
  fs::path dir_, station_file_;
  std::string token_;
  ServerProcess server_;
};


// The frame the station gets when the camera shows `bgr` (RGB8 at kSide x kSide), as PNG.
std::string FramePng(const cv::Mat& bgr) {
  cv::Mat rgb(kSide, kSide, CV_8UC3), frame;
  testing::RenderFrame(bgr, kSide, kSide, ARV_PIXEL_FORMAT_RGB_8_PACKED, rgb.data);
  cv::cvtColor(rgb, frame, cv::COLOR_RGB2BGR);
  std::vector<uint8_t> png;
  cv::imencode(".png", frame, png);
  return std::string(png.begin(), png.end());
}

TEST(Station, FiftyPartsReachThePlcInOrderAreStoredAndSigtermFinishesThePartInHand) {
  REQUIRE_BACKBONE();
  REQUIRE_DATASETS();
  const auto photos = Photos();
  Rig rig;
  ASSERT_NO_FATAL_FAILURE(rig.Start());
  auto c = rig.Client();
  // What the engine says of each photo as the camera delivers it, judged aside (nothing stored).
  std::vector<uint16_t> expected;
  int right = 0;
  for (const auto& p : photos) {
    httplib::MultipartFormDataItems f = {{"image", FramePng(p.bgr), "frame.png", "image/png"}};
    auto r = c.Post("/v1/products/brush/score", f);
    ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
    const bool nok = nlohmann::json::parse(r->body)["verdict"] == "NOK";
    expected.push_back(nok ? 2 : 1);
    right += nok == p.defective;
  }
  EXPECT_GE(right, 7) << "the engine is right about these photos, not only consistent";

  // 50 parts, one after the other as on a line: part ids 1000.., photos in a fixed mixed order.
  std::vector<int> order;
  for (int i = 0; i < 50; ++i) order.push_back((i * 5 + i / 8) % int(photos.size()));
  for (int i = 0; i < 50; ++i) rig.Part(photos[order[i]].bgr, uint16_t(1000 + i));
  const auto results = rig.plc().results();
  ASSERT_EQ(results.size(), 50u);
  for (int i = 0; i < 50; ++i) {
    SCOPED_TRACE("part " + std::to_string(i));
    EXPECT_EQ(results[i].part_id, 1000 + i) << "in order";
    EXPECT_EQ(results[i].counter, i + 1) << "the counter steps by one";
    EXPECT_EQ(results[i].verdict, expected[order[i]]) << "1 OK, 2 NOK, 3 error";
    EXPECT_LE(results[i].score, 2000);
  }

  // Each part is an inspection like any other: station, part id, verdict, frame, timing.
  nlohmann::json items;  // stored after the PLC has its answer: waited for
  auto all_done = [&] {
    if (items.size() < 50) return false;
    for (const auto& it : items)
      if (it["status"] != "done") return false;
    return true;
  };
  for (auto until = Clock::now() + std::chrono::seconds(60); Clock::now() < until && !all_done();) {
    auto list = c.Get("/v1/inspections?limit=50");
    ASSERT_TRUE(list && list->status == 200);
    items = nlohmann::json::parse(list->body)["items"];
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(items.size(), 50u);
  for (size_t k = 0; k < items.size(); ++k) {  // newest first
    const int i = 49 - int(k);
    const auto& it = items[k];
    EXPECT_EQ(it["station"], "line-1");
    EXPECT_EQ(it["part_id"], std::to_string(1000 + i));
    EXPECT_EQ(it["verdict"], expected[order[i]] == 2 ? "NOK" : "OK") << it.dump();
    EXPECT_EQ(it["metadata"]["plc"], "delivered");
    EXPECT_EQ(it["metadata"]["plc_counter"], i + 1);
  }
  auto image = c.Get("/v1/inspections/" + items[0]["id"].get<std::string>() + "/image");
  ASSERT_TRUE(image && image->status == 200);
  const cv::Mat stored = cv::imdecode(std::vector<uint8_t>(image->body.begin(), image->body.end()), cv::IMREAD_COLOR);
  EXPECT_EQ(stored.size(), cv::Size(kSide, kSide)) << "the frame itself, stored losslessly";

  auto state = rig.State();
  EXPECT_EQ(state["counters"]["parts"], 50);
  EXPECT_EQ(state["counters"]["errors"], 0);
  EXPECT_EQ(state["camera"]["state"], "connected");
  EXPECT_EQ(state["plc"]["state"], "connected");
  EXPECT_EQ(state["last"]["part_id"], 1049);
  EXPECT_GT(state["latency_ms"]["total"]["p50"].get<double>(), state["latency_ms"]["engine"]["p50"].get<double>());
  auto frame = c.Get("/v1/station/frame");
  ASSERT_TRUE(frame && frame->status == 200);
  EXPECT_EQ(frame->get_header_value("Content-Type"), "image/jpeg");
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics && metrics->status == 200);
  EXPECT_NE(metrics->body.find("zeroqc_station_camera_up{station=\"line-1\"} 1"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("zeroqc_station_stage_seconds{station=\"line-1\",stage=\"total\",quantile=\"0.5\"}"), std::string::npos);
  auto fire = c.Post("/v1/station/trigger", "", "application/json");
  ASSERT_TRUE(fire);
  EXPECT_EQ(fire->status, 409) << "a PLC-triggered station takes no trigger from the API";

  // SIGTERM right after the station took a part: that part is finished, answered and stored.
  rig.Trigger(photos[4].bgr, 2000);
  ASSERT_TRUE(rig.Taken());
  kill(rig.server().pid, SIGTERM);
  int status = 0;
  waitpid(rig.server().pid, &status, 0);
  rig.server().pid = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const auto after = rig.plc().results();
  ASSERT_EQ(after.size(), 51u) << "the part in hand got its result";
  EXPECT_EQ(after[50].part_id, 2000);
  EXPECT_EQ(after[50].counter, 51);
  EXPECT_EQ(after[50].verdict, expected[4]);
  auto store = Store::Open(rig.dir() / "data");
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->CountByStatus("done"), 51);
}

// Faults a line has, each answered: an overrun, a lost packet, the camera unplugged and back, the
// PLC restarted.
TEST(Station, OverrunsLostPacketsCameraLossAndPlcRestartAreResults) {
  REQUIRE_BACKBONE();
  REQUIRE_DATASETS();
  const auto photos = Photos();
  Rig rig("plc", /*queue=*/1);
  ASSERT_NO_FATAL_FAILURE(rig.Start());
  rig.Part(photos[0].bgr, 1);  // the engine is built

  // Overrun: 8 parts as fast as the station takes them, with room for 1 waiting. Every trigger gets
  // a result, in order; the ones past the bound are errors (3), never dropped.
  for (int i = 0; i < 8; ++i) {
    rig.Trigger(photos[i % photos.size()].bgr, uint16_t(100 + i));
    ASSERT_TRUE(rig.Taken());
  }
  auto r = rig.Results(9);
  ASSERT_EQ(r.size(), 9u);
  int overruns = 0;
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(r[1 + i].part_id, 100 + i);
    EXPECT_EQ(r[1 + i].counter, 2 + i);
    overruns += r[1 + i].verdict == 3;
  }
  EXPECT_GT(overruns, 0);
  EXPECT_LT(overruns, 8);
  // The station counts a part just after the PLC has its result: wait for the count to catch up.
  ASSERT_TRUE(rig.WaitState([](const nlohmann::json& s) { return s["counters"]["parts"].get<int>() >= 9; }, 10)) << rig.State().dump();
  auto state = rig.State();
  EXPECT_EQ(state["counters"]["overruns"], overruns);

  // Lost packets: with 30% of GVSP packets lost a frame arrives incomplete; it is an error result,
  // never inspected as if whole.
  rig.camera().LosePackets(0.3);
  auto lost = rig.Part(photos[0].bgr, 300);
  EXPECT_EQ(lost.verdict, 3);
  rig.camera().LosePackets(0);
  ASSERT_TRUE(rig.WaitState([](const nlohmann::json& s) { return s["counters"]["parts"].get<int>() >= 10; }, 10)) << rig.State().dump();
  EXPECT_GE(rig.State()["counters"]["incomplete_frames"].get<int>() + rig.State()["camera"]["losses"].get<int>(), 1);

  // A stream that died with the camera still answering (every GVSP packet lost): after three
  // triggers without a frame the station opens the camera again, and parts are judged again.
  const int losses = rig.State()["camera"]["losses"].get<int>();
  rig.camera().LosePackets(1.0);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(rig.Part(photos[0].bgr, uint16_t(310 + i)).verdict, 3);
  ASSERT_TRUE(rig.WaitState([&](const nlohmann::json& s) { return s["camera"]["losses"].get<int>() > losses; }, 10))
      << rig.State().dump();
  rig.camera().LosePackets(0);
  ASSERT_TRUE(rig.WaitState([](const nlohmann::json& s) { return s["camera"]["state"] == "connected"; }, 30)) << rig.State().dump();
  EXPECT_NE(rig.Part(photos[0].bgr, 320).verdict, 3) << "the reopened stream brings frames";

  // The camera unplugged: its parts are errors at once, the page and /metrics say so; plugged in
  // again, it is found and parts are judged again.
  rig.camera().Stop();
  auto gone = rig.Part(photos[4].bgr, 400);
  EXPECT_EQ(gone.verdict, 3);
  ASSERT_TRUE(rig.WaitState([](const nlohmann::json& s) { return s["camera"]["state"] == "lost"; }, 10)) << rig.State().dump();
  auto metrics = rig.Client().Get("/metrics");
  EXPECT_NE(metrics->body.find("zeroqc_station_camera_up{station=\"line-1\"} 0"), std::string::npos);
  rig.camera().Start();
  ASSERT_TRUE(rig.WaitState([](const nlohmann::json& s) { return s["camera"]["state"] == "connected"; }, 30)) << rig.State().dump();
  auto back = rig.Part(photos[4].bgr, 401);
  EXPECT_NE(back.verdict, 3) << "judged again";

  // The PLC restarts: the station reconnects and its results go on counting.
  const uint16_t counter = rig.plc().results().back().counter;
  rig.plc().Stop();
  rig.plc().Start();
  auto again = rig.Part(photos[0].bgr, 500);
  EXPECT_EQ(again.part_id, 500);
  EXPECT_EQ(again.counter, counter + 1);
  EXPECT_NE(again.verdict, 3);
}

// The camera's own hardware input (trigger "line0"): the station never fires the camera; each frame
// the camera sends on a pulse is a part, judged and answered.
TEST(Station, Line0PulsesAreEachAPart) {
  REQUIRE_BACKBONE();
  REQUIRE_DATASETS();
  const auto photos = Photos();
  Rig rig("line0");
  ASSERT_NO_FATAL_FAILURE(rig.Start());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(rig.State()["counters"]["parts"], 0) << "no pulse, no part";
  for (int i = 0; i < 4; ++i) {
    const size_t before = rig.plc().results().size();
    rig.SetScene(photos[i % 2 == 0 ? 0 : 4].bgr);
    rig.camera().PulseLine0();
    auto r = rig.Results(before + 1, 60);
    ASSERT_EQ(r.size(), before + 1) << rig.State().dump();
    EXPECT_EQ(r.back().counter, i + 1);
    EXPECT_NE(r.back().verdict, 3) << rig.State().dump();
  }
  EXPECT_EQ(rig.State()["trigger"], "line0");
}

// A software-triggered station (the API fires it) whose PLC only takes results: while the PLC is
// away, results are stored and marked as never delivered (a late verdict for a part long gone
// would be taken for another's); when it is back, the next results count on.
TEST(Station, ResultsThePlcCannotTakeAreStoredAsUndelivered) {
  REQUIRE_BACKBONE();
  REQUIRE_DATASETS();
  const auto photos = Photos();
  Rig rig("software");
  ASSERT_NO_FATAL_FAILURE(rig.Start());
  auto c = rig.Client();
  auto fire = [&](const cv::Mat& scene) {
    rig.SetScene(scene);
    auto r = c.Post("/v1/station/trigger", "", "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 202) << r->body;
  };
  auto parts = [&](int n) { return rig.WaitState([n](const nlohmann::json& s) { return s["counters"]["parts"] == n; }, 60); };
  fire(photos[0].bgr);
  ASSERT_TRUE(parts(1)) << rig.State().dump();
  ASSERT_EQ(rig.Results(1).size(), 1u);
  rig.plc().Stop();
  fire(photos[4].bgr);
  ASSERT_TRUE(parts(2)) << rig.State().dump();
  auto state = rig.State();
  EXPECT_EQ(state["counters"]["undelivered"], 1);
  EXPECT_EQ(state["plc"]["state"], "unreachable");
  EXPECT_EQ(state["last"]["plc"], "undelivered");
  ASSERT_TRUE(rig.WaitState([](const nlohmann::json& s) { return s["last"]["inspection"].is_string(); }, 30));
  auto stored = c.Get("/v1/inspections/" + rig.State()["last"]["inspection"].get<std::string>());
  ASSERT_TRUE(stored && stored->status == 200);
  const auto j = nlohmann::json::parse(stored->body);
  EXPECT_EQ(j["metadata"]["plc"], "undelivered");
  EXPECT_EQ(j["status"], "done") << "judged all the same";
  rig.plc().Start();
  fire(photos[0].bgr);
  ASSERT_TRUE(parts(3));
  auto r = rig.Results(2);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].counter, 2) << "the undelivered result was not counted";
}

// A station file with a mistake stops serve at once with one line that names it; devices that do
// not answer do not stop it: it serves, and says what it waits for.
TEST(Station, BadFilesAndUnreachableDevicesAreOneClearLine) {
  auto dir = testing::TempDir();
  std::ofstream(dir / "typo.json") << R"({"product":"brush","trigger":"plc","plc":{"host":"127.0.0.1","trigger_coil":"three"}})";
  auto bad = testing::Zeroqc("serve --data " + (dir / "data").string() + " --port 0 --station " + (dir / "typo.json").string());
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("plc.trigger_coil must be a whole number"), std::string::npos) << bad.err;
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  auto missing = testing::Zeroqc("serve --data " + (dir / "data").string() + " --port 0 --station " + (dir / "nope.json").string());
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find("cannot be read"), std::string::npos) << missing.err;

  // No camera at 127.0.0.1 and no PLC on this port: serve runs, /v1/station says why.
  const int port = testing::FreePort();
  std::ofstream(dir / "away.json") << nlohmann::json{{"product", "brush"},
                                                      {"camera", {{"id", "127.0.0.1"}}},
                                                      {"trigger", "plc"},
                                                      {"plc", {{"host", "127.0.0.1"}, {"port", port}, {"timeout_ms", 100}}}};
  auto key = testing::Zeroqc("keys create --scope read --name test --data " + (dir / "data").string());
  ASSERT_EQ(key.status, 0) << key.err;
  ServerProcess server = Spawn(dir / "data", {"--station", (dir / "away.json").string()});
  ASSERT_GT(server.port, 0);
  httplib::Client c("127.0.0.1", server.port);
  c.set_bearer_token_auth(key.out.substr(0, key.out.find('\n')).c_str());
  nlohmann::json state;
  for (auto until = Clock::now() + std::chrono::seconds(20); Clock::now() < until;) {
    auto r = c.Get("/v1/station");
    if (r && r->status == 200) state = nlohmann::json::parse(r->body);
    if (state.is_object() && state["plc"]["state"] == "unreachable" && !state["camera"]["error"].get<std::string>().empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(state["plc"]["state"], "unreachable") << state.dump();
  EXPECT_NE(state["plc"]["error"].get<std::string>().find("127.0.0.1:" + std::to_string(port)), std::string::npos) << state.dump();
  EXPECT_NE(state["camera"]["state"], "connected");
  EXPECT_NE(state["camera"]["error"].get<std::string>().find("127.0.0.1"), std::string::npos) << state.dump();
  EXPECT_EQ(c.Get("/healthz")->status, 200) << "the service itself runs";
  kill(server.pid, SIGTERM);
  int status = 0;
  waitpid(server.pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "stops at once, waiting for no device";
}

// A stream socket that cannot hold a frame is said, with what to change: serve without
// CAP_NET_ADMIN (so the system's net.core.rmem_max caps the socket) and 2048 x 2048 RGB frames
// (12 MB). Whether that is more than the limit depends on the machine: the warning must be there
// exactly when it is. With CAP_NET_ADMIN (root) the socket is sized past the limit: never a warning.
TEST(Station, ASocketThatCannotHoldAFrameIsSaid) {
  REQUIRE_BACKBONE();
  REQUIRE_DATASETS();
  long rmem_max = 0;
  std::ifstream("/proc/sys/net/core/rmem_max") >> rmem_max;
  ASSERT_GT(rmem_max, 0);
  constexpr long kPayload = 2048L * 2048 * 3;
  {
    Rig rig("software", 4, 2048);
    ASSERT_NO_FATAL_FAILURE(rig.Start([] { prctl(PR_CAPBSET_DROP, CAP_NET_ADMIN, 0, 0, 0); }));
    const auto camera = rig.State()["camera"];
    const std::string warning = camera.value("warning", "?");
    if (rmem_max < kPayload) {
      EXPECT_NE(warning.find("less than one frame"), std::string::npos) << "rmem_max " << rmem_max << ": " << camera.dump();
      EXPECT_NE(warning.find("net.core.rmem_max="), std::string::npos) << camera.dump();
    } else {
      EXPECT_EQ(warning, "") << "rmem_max " << rmem_max << " holds a frame";
    }
  }
  if (geteuid() != 0) return;
  Rig rig("software", 4, 2048);
  ASSERT_NO_FATAL_FAILURE(rig.Start());
  EXPECT_EQ(rig.State()["camera"].value("warning", "?"), "");
}

}  // namespace
}  // namespace zeroqc
