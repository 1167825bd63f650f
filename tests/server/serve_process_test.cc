// The real `zeroqc serve` process with the embedded engine: kill -9 during a burst of uploads, start
// it again on the same data folder, and every inspection that got a 202 is there and finished.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>

#include <fstream>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cli/run_zeroqc.h"
#include "server/store.h"

namespace zeroqc {
namespace {

namespace fs = std::filesystem;

struct ServerProcess {
  pid_t pid = -1;
  int port = 0;
};

ServerProcess Spawn(const fs::path& data) {
  int out[2];
  EXPECT_EQ(pipe(out), 0);
  ServerProcess s;
  s.pid = fork();
  if (s.pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    const std::string bin = testing::ZeroqcBinary().string(), d = data.string(), cache = (testing::BinaryDir() / "test-cache").string();
    execl(bin.c_str(), bin.c_str(), "serve", "--data", d.c_str(), "--port", "0", "--queue", "100", "--rate", "1000",
          "--burst", "1000", "--cache", cache.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  FILE* f = fdopen(out[0], "r");
  char line[64] = {0};
  if (fgets(line, sizeof line, f)) std::sscanf(line, "port %d", &s.port);
  fclose(f);
  return s;
}

std::string PartPng(int i, bool defect) {
  cv::Mat m(256, 256, CV_8UC3, cv::Scalar(90, 90, 90));
  cv::circle(m, {128, 128}, 80, cv::Scalar(160, 160, 170), cv::FILLED);
  cv::putText(m, std::to_string(i % 3), {20, 40}, cv::FONT_HERSHEY_SIMPLEX, 0.4, cv::Scalar(100, 100, 100));
  if (defect) cv::line(m, {90, 100}, {170, 150}, cv::Scalar(20, 20, 20), 4);
  std::vector<uint8_t> b;
  cv::imencode(".png", m, b);
  return std::string(b.begin(), b.end());
}

httplib::Client ClientFor(const ServerProcess& server, const std::string& token) {
  httplib::Client c("127.0.0.1", server.port);
  c.set_bearer_token_auth(token.c_str());
  return c;
}

// An admin key, a running serve on `data`, and a product "disc" with one reference.
void StartWithProduct(const fs::path& data, std::string* token, ServerProcess* server) {
  auto key = testing::Zeroqc("keys create --scope admin --name test --data " + data.string());
  ASSERT_EQ(key.status, 0) << key.err;
  *token = key.out.substr(0, key.out.find('\n'));
  *server = Spawn(data);
  ASSERT_GT(server->port, 0);
  auto c = ClientFor(*server, *token);
  ASSERT_EQ(c.Post("/v1/products", R"({"name":"disc"})", "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", PartPng(0, false), "ref.png", "image/png"}};
  ASSERT_EQ(c.Post("/v1/products/disc/references", ref)->status, 201);
}

TEST(ServeProcess, KillNineDuringABurstLosesNoAcceptedInspection) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  std::string token;
  ServerProcess server;
  ASSERT_NO_FATAL_FAILURE(StartWithProduct(dir / "data", &token, &server));
  auto c = ClientFor(server, token);

  std::vector<std::string> accepted;
  for (int i = 0; i < 16; ++i) {
    httplib::MultipartFormDataItems items = {{"image", PartPng(i, i % 2 == 1), "p.png", "image/png"}, {"product", "disc", "", ""}};
    auto r = c.Post("/v1/inspections", items);
    if (r && r->status == 202) accepted.push_back(nlohmann::json::parse(r->body)["id"]);
    if (accepted.size() == 10) kill(server.pid, SIGKILL);  // mid-burst, with work queued and running
  }
  waitpid(server.pid, nullptr, 0);
  ASSERT_GE(accepted.size(), 10u);
  {  // the kill did catch work in flight, or this test would prove nothing
    auto store = Store::Open(dir / "data");
    ASSERT_TRUE(store.ok());
    EXPECT_GT((*store)->CountByStatus("queued") + (*store)->CountByStatus("running"), 0);
  }

  server = Spawn(dir / "data");
  ASSERT_GT(server.port, 0);
  auto c2 = ClientFor(server, token);
  c2.set_read_timeout(30, 0);
  int finished = 0;
  for (const auto& id : accepted) {
    for (int i = 0; i < 600; ++i) {
      auto r = c2.Get(("/v1/inspections/" + id).c_str());
      ASSERT_TRUE(r && r->status == 200) << id << " lost after kill -9";
      auto j = nlohmann::json::parse(r->body);
      if (j["status"] == "done") {
        ++finished;
        break;
      }
      ASSERT_NE(j["status"], "failed") << j.dump();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  kill(server.pid, SIGTERM);
  int status = 0;
  waitpid(server.pid, &status, 0);
  EXPECT_EQ(finished, int(accepted.size()));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "graceful stop on SIGTERM";
}

int64_t PeakRssMb(pid_t pid) {  // VmHWM of a running process
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) / 1024;
  return -1;
}

// Issue 10, finding 7: a 9000x9000 PNG (a few hundred KB, under the pixel limit) took the server
// from 275 MB to ~2 GB (a full-size float heat map and a full-size overlay on top of the image).
// Now the map stays at the engine's resolution and the overlay at most 4096 px: the peak stays
// under 1 GB (the decoded image alone is 243 MB), and the boxes are still in the PNG's pixels.
TEST(ServeProcess, AHugePngStaysWithinBoundedMemory) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  std::string token;
  ServerProcess server;
  ASSERT_NO_FATAL_FAILURE(StartWithProduct(dir / "data", &token, &server));
  auto c = ClientFor(server, token);
  c.set_read_timeout(120, 0);

  const std::string small = PartPng(1, true);
  cv::Mat part = cv::imdecode(std::vector<uint8_t>(small.begin(), small.end()), cv::IMREAD_COLOR), huge;
  cv::resize(part, huge, {9000, 9000}, 0, 0, cv::INTER_NEAREST);
  std::vector<uint8_t> png;
  ASSERT_TRUE(cv::imencode(".png", huge, png, {cv::IMWRITE_PNG_COMPRESSION, 9}));
  std::printf("9000x9000 PNG: %zu KB\n", png.size() / 1024);
  httplib::MultipartFormDataItems items = {{"image", std::string(png.begin(), png.end()), "huge.png", "image/png"}, {"product", "disc", "", ""}};
  auto r = c.Post("/v1/inspections?wait=true&timeout_ms=120000", items);
  ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
  auto j = nlohmann::json::parse(r->body);
  EXPECT_EQ(j["result"]["image"]["width"], 9000);
  ASSERT_EQ(j["verdict"], "NOK") << j.dump();
  const auto& box = j["result"]["objects"][0]["bounding_box"];
  // The planted line runs from (90,100) to (170,150) in 256 px: x 3164-5977, y 3516-5273 in 9000 px.
  EXPECT_LT(box["x_min"].get<int>(), 4500);
  EXPECT_GT(box["x_max"].get<int>(), 4500);
  EXPECT_GT(box["y_max"].get<int>(), 3600);
  auto overlay = c.Get(("/v1/inspections/" + j["id"].get<std::string>() + "/overlay").c_str());
  ASSERT_TRUE(overlay && overlay->status == 200);
  cv::Mat o = cv::imdecode(std::vector<uint8_t>(overlay->body.begin(), overlay->body.end()), cv::IMREAD_COLOR);
  EXPECT_EQ(o.cols, 4096) << "overlays are at most 4096 px";
  const int64_t peak = PeakRssMb(server.pid);
  std::printf("serve peak memory after a 9000x9000 PNG: %lld MB\n", static_cast<long long>(peak));
  EXPECT_GT(peak, 0);
  EXPECT_LT(peak, 1024) << "MB";
  kill(server.pid, SIGTERM);
  waitpid(server.pid, nullptr, 0);
}

}  // namespace
}  // namespace zeroqc
