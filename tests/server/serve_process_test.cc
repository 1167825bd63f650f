// The real `zeroqc serve` process with the embedded engine: kill -9 during a burst of uploads, start
// it again on the same data folder, and every inspection that got a 202 is there and finished.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>

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

TEST(ServeProcess, KillNineDuringABurstLosesNoAcceptedInspection) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto key = testing::Zeroqc("keys create --scope admin --name test --data " + (dir / "data").string());
  ASSERT_EQ(key.status, 0) << key.err;
  const std::string token = key.out.substr(0, key.out.find('\n'));

  auto server = Spawn(dir / "data");
  ASSERT_GT(server.port, 0);
  httplib::Client c("127.0.0.1", server.port);
  c.set_bearer_token_auth(token.c_str());
  ASSERT_EQ(c.Post("/v1/products", R"({"name":"disc"})", "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", PartPng(0, false), "ref.png", "image/png"}};
  ASSERT_EQ(c.Post("/v1/products/disc/references", ref)->status, 201);

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
  httplib::Client c2("127.0.0.1", server.port);
  c2.set_bearer_token_auth(token.c_str());
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

}  // namespace
}  // namespace zeroqc
