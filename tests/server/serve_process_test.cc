// The real `zeroqc serve` process with the embedded engine: kill -9 during a burst of uploads, start
// it again on the same data folder, and every inspection that got a 202 is there and finished.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>

#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cli/run_zeroqc.h"
#include "server/store.h"
#include "server/serve_process.h"
#include "servers/servers.h"

namespace zeroqc {
namespace {

namespace fs = std::filesystem;

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

// Issue 12: two serve processes share one PostgreSQL; a burst of uploads goes to both and one is
// killed with SIGKILL while it runs an inspection. Every 202 finishes exactly once (one result,
// one webhook), and the survivor finishes the dead one's claimed work once its lease runs out.
TEST(ServeProcess, TwoWorkersOnOnePostgresOneKilledMidBurst) {
  REQUIRE_BACKBONE();
  const auto dir = testing::TempDir();
  const std::string url = testing::NewPostgresDatabase();
  ASSERT_FALSE(url.empty());
  auto key = testing::Zeroqc("keys create --scope admin --name test --db " + url);
  ASSERT_EQ(key.status, 0) << key.err;
  const std::string token = key.out.substr(0, key.out.find('\n'));

  // The webhook receiver: counts deliveries per inspection.
  std::mutex mu;
  std::map<std::string, int> hooks;
  httplib::Server receiver;
  receiver.Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
    auto j = nlohmann::json::parse(req.body, nullptr, false);
    if (!j.is_discarded()) {
      std::lock_guard lock(mu);
      ++hooks[j["inspection"]["id"].get<std::string>()];
    }
    res.status = 200;
  });
  const int hook_port = receiver.bind_to_any_port("127.0.0.1");
  std::thread hook_thread([&] { receiver.listen_after_bind(); });

  const std::vector<std::string> shared = {"--db", url, "--lease", "3", "--allow-private-webhooks"};
  ServerProcess a = Spawn(dir / "a", shared), b = Spawn(dir / "b", shared);
  ASSERT_GT(a.port, 0);
  ASSERT_GT(b.port, 0);
  auto ca = ClientFor(a, token), cb = ClientFor(b, token);
  const nlohmann::json product = {{"name", "disc"}, {"webhook_url", "http://127.0.0.1:" + std::to_string(hook_port) + "/hook"}};
  ASSERT_EQ(ca.Post("/v1/products", product.dump(), "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", PartPng(0, false), "ref.png", "image/png"}};
  ASSERT_EQ(cb.Post("/v1/products/disc/references", ref)->status, 201) << "a change through either process reaches both";

  std::vector<std::string> accepted;
  std::set<std::string> orphaned;  // running in b when it died
  std::chrono::system_clock::time_point killed_at;
  bool b_alive = true;
  for (int i = 0; i < 60; ++i) {
    httplib::MultipartFormDataItems items = {{"image", PartPng(i, i % 3 == 1), "p.png", "image/png"}, {"product", "disc", "", ""}};
    auto r = (i % 2 == 0 || !b_alive ? ca : cb).Post("/v1/inspections", items);
    if (r && r->status == 202) accepted.push_back(nlohmann::json::parse(r->body)["id"]);
    if (b_alive && accepted.size() >= 24) {  // mid-burst, at a moment when b is running an inspection
      const std::string running = "SELECT id FROM inspections WHERE status = 'running' AND worker LIKE '%:" + std::to_string(b.pid) + ":%'";
      for (int t = 0; t < 400 && testing::PgRows(url, running).empty(); ++t) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      kill(b.pid, SIGKILL);
      waitpid(b.pid, nullptr, 0);
      killed_at = std::chrono::system_clock::now();
      b_alive = false;
      for (const auto& row : testing::PgRows(url, running)) orphaned.insert(row[0]);
    }
  }
  ASSERT_FALSE(b_alive);
  ASSERT_GE(accepted.size(), 50u);
  ASSERT_FALSE(orphaned.empty()) << "the kill caught no running inspection: this run proves nothing";

  ca.set_read_timeout(30, 0);
  for (const auto& id : accepted) {
    nlohmann::json j;
    for (int i = 0; i < 1200; ++i) {
      auto r = ca.Get(("/v1/inspections/" + id).c_str());
      ASSERT_TRUE(r && r->status == 200) << id << " lost";
      j = nlohmann::json::parse(r->body);
      if (j["status"] == "done" || j["status"] == "failed") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_EQ(j["status"], "done") << j.dump();
    if (orphaned.count(id)) {
      EXPECT_NE(j["worker"].get<std::string>().find(":" + std::to_string(a.pid) + ":"), std::string::npos) << "the survivor finished it";
      const auto finished = ParseIso(j["finished_at"].get<std::string>());
      ASSERT_TRUE(finished) << j["finished_at"];
      EXPECT_GT(*finished, killed_at + std::chrono::seconds(1)) << "taken over only after the lease (3 s, renewed every 1 s)";
    }
  }
  const std::string ids = [&] {
    std::string s;
    for (const auto& id : orphaned) s += (s.empty() ? "'" : ",'") + id + "'";
    return s;
  }();
  for (const auto& row : testing::PgRows(url, "SELECT claims FROM inspections WHERE id IN (" + ids + ")")) EXPECT_EQ(row[0], "2");
  EXPECT_EQ(testing::PgRows(url, "SELECT inspection FROM deliveries GROUP BY inspection HAVING COUNT(*) > 1").size(), 0u)
      << "one webhook delivery per inspection";
  EXPECT_EQ(testing::PgRows(url, "SELECT COUNT(*) FROM inspections")[0][0], std::to_string(accepted.size())) << "nothing but the 202s";
  for (int i = 0; i < 200; ++i) {  // webhooks: each inspection announced exactly once
    {
      std::lock_guard lock(mu);
      if (hooks.size() >= accepted.size()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(hooks.size(), accepted.size());
    for (const auto& [id, n] : hooks) EXPECT_EQ(n, 1) << id;
  }
  auto metrics = ca.Get("/metrics");
  ASSERT_TRUE(metrics && metrics->status == 200);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(metrics->body, m, std::regex("zeroqc_inspections_reclaimed_total (\\d+)")));
  EXPECT_GE(std::stoul(m[1]), orphaned.size());
  kill(a.pid, SIGTERM);
  waitpid(a.pid, nullptr, 0);
  receiver.stop();
  hook_thread.join();
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
// under 1 GB (the decoded image alone is 243 MB), also after three parallel uploads of it, and the
// boxes are still in the PNG's pixels.
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
  // Issue 27, finding 15: three such uploads at once each decoded the whole image to check it (1.07
  // GB); the check now reads row by row, and only the worker holds the pixels, one image at a time.
  std::vector<std::thread> parallel;
  for (int i = 0; i < 3; ++i)
    parallel.emplace_back([&] {
      auto p = ClientFor(server, token).Post("/v1/inspections", items);
      EXPECT_TRUE(p && p->status == 202) << (p ? p->body : "no answer");
    });
  for (auto& t : parallel) t.join();
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

// Issue 26, item 6: serve judges by the line window unless a product says otherwise. A product's
// first 7 parts are judged by its references alone, the rest by the line's recent parts too; a
// product with line_window 0 or a fixed threshold is not, and asking for both is refused at save.
TEST(ServeProcess, TheLineWindowIsOnByDefault) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  std::string token;
  ServerProcess server;
  ASSERT_NO_FATAL_FAILURE(StartWithProduct(dir / "data", &token, &server));
  auto c = ClientFor(server, token);
  c.set_read_timeout(60, 0);
  httplib::MultipartFormDataItems ref = {{"image", PartPng(0, false), "ref.png", "image/png"}};
  for (const char* p : {R"({"name":"off","settings":{"line_window":0}})", R"({"name":"fixed","settings":{"threshold":0.5}})"}) {
    ASSERT_EQ(c.Post("/v1/products", p, "application/json")->status, 201) << p;
    const std::string name = nlohmann::json::parse(p)["name"];
    ASSERT_EQ(c.Post(("/v1/products/" + name + "/references").c_str(), ref)->status, 201);
  }
  auto both = c.Post("/v1/products", R"({"name":"both","settings":{"threshold":0.5,"line_window":16}})", "application/json");
  ASSERT_EQ(both->status, 400) << both->body;
  EXPECT_NE(both->body.find("set line_window to 0 with a fixed threshold"), std::string::npos) << both->body;

  auto distinct = [](int i) {  // a different photo each time: the window counts the same pixels once
    cv::Mat m(256, 256, CV_8UC3, cv::Scalar(90, 90, 90));
    cv::circle(m, {126 + i % 5, 128 + i % 3}, 80, cv::Scalar(160, 160, 170), cv::FILLED);
    cv::putText(m, std::to_string(i), {20, 40}, cv::FONT_HERSHEY_SIMPLEX, 0.4, cv::Scalar(100, 100, 100));
    std::vector<uint8_t> b;
    cv::imencode(".png", m, b);
    return std::string(b.begin(), b.end());
  };
  std::map<std::string, std::vector<std::string>> seen;
  for (int i = 0; i < 9; ++i)
    for (const char* product : {"disc", "off", "fixed"}) {
      httplib::MultipartFormDataItems items = {{"image", distinct(i), "p.png", "image/png"}, {"product", product, "", ""}};
      auto r = c.Post("/v1/inspections?wait=true&timeout_ms=60000", items);
      ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
      seen[product].push_back(nlohmann::json::parse(r->body)["result"].value("calibration", ""));
    }
  for (int i = 0; i < 9; ++i) {
    EXPECT_EQ(seen["disc"][i], i < 7 ? "references" : "line") << "part " << i;
    EXPECT_EQ(seen["off"][i], "references") << "part " << i;
    EXPECT_EQ(seen["fixed"][i], "fixed") << "part " << i;
  }
  auto calibration = c.Get("/v1/products/disc/calibration");
  ASSERT_TRUE(calibration && calibration->status == 200);
  const auto line = nlohmann::json::parse(calibration->body)["calibration"]["line"];
  EXPECT_EQ(line["window"], 32) << calibration->body;
  EXPECT_EQ(line["parts"], 9) << calibration->body;
  EXPECT_FALSE(nlohmann::json::parse(c.Get("/v1/products/off/calibration")->body)["calibration"].contains("line"));
  kill(server.pid, SIGTERM);
  waitpid(server.pid, nullptr, 0);
}

// Issue 27, finding 14: on a full disk an upload got 500 "internal" naming the server's blob path,
// and queued work stalled with no log line while /readyz said ready. The data folder here is a
// 4 MB tmpfs in a private mount namespace (unshare: no root needed), nearly filled by a file the
// test removes later.
TEST(ServeProcess, AFullDiskIs507NotReadyAndRecovers) {
  REQUIRE_BACKBONE();
  const fs::path dir = testing::TempDir(), disk = dir / "disk";
  fs::create_directories(disk);
  const std::string bin = testing::ZeroqcBinary().string(), cache = (testing::BinaryDir() / "test-cache").string();
  const std::string script =
      "mount -t tmpfs -o size=4m none " + disk.string() + " && dd if=/dev/zero of=" + disk.string() +
      "/filler bs=1024 count=2600 2>/dev/null && "
      "(while [ ! -e " + dir.string() + "/free ]; do sleep 0.1; done; rm -f " + disk.string() + "/filler) & " +
      bin + " keys create --scope admin --name t --data " + disk.string() + "/data > " + dir.string() + "/key && exec " + bin +
      " serve --data " + disk.string() + "/data --port 0 --lease 2 --cache " + cache + " 2>" + dir.string() + "/serve.log";
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    execl("/usr/bin/unshare", "unshare", "--map-root-user", "--mount", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  struct Cleanup {
    pid_t pid;
    fs::path dir;
    ~Cleanup() {
      std::ofstream(dir / "free") << "";  // the filler's watcher ends too
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  } cleanup{pid, dir};
  FILE* f = fdopen(out[0], "r");
  char line[64] = {0};
  int port = 0;
  if (fgets(line, sizeof line, f)) std::sscanf(line, "port %d", &port);
  fclose(f);
  ASSERT_GT(port, 0) << "serve did not start in the namespace";
  std::string token;
  std::ifstream(dir / "key") >> token;
  httplib::Client c("127.0.0.1", port);
  c.set_bearer_token_auth(token.c_str());
  c.set_read_timeout(60, 0);
  ASSERT_EQ(c.Post("/v1/products", R"({"name":"disc"})", "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", PartPng(0, false), "ref.png", "image/png"}};
  ASSERT_EQ(c.Post("/v1/products/disc/references", ref)->status, 201);

  // Noise does not compress: each upload takes its size on the disk.
  std::vector<std::string> accepted;
  std::optional<httplib::Response> full;
  for (int i = 0; i < 40; ++i) {
    cv::Mat noise(300, 300, CV_8UC3);
    cv::randu(noise, 0, 255);
    std::vector<uint8_t> png;
    cv::imencode(".png", noise, png);
    httplib::MultipartFormDataItems items = {{"image", std::string(png.begin(), png.end()), "p.png", "image/png"}, {"product", "disc", "", ""}};
    auto r = c.Post("/v1/inspections", items);
    ASSERT_TRUE(r);
    if (r->status == 202) accepted.push_back(nlohmann::json::parse(r->body)["id"]);
    else {
      full = *r;
      break;
    }
  }
  ASSERT_TRUE(full.has_value()) << "the disk never filled";
  EXPECT_EQ(full->status, 507) << full->body;
  EXPECT_NE(full->body.find("insufficient_storage"), std::string::npos) << full->body;
  EXPECT_NE(full->body.find("disk is full"), std::string::npos) << full->body;
  EXPECT_EQ(full->body.find(disk.string()), std::string::npos) << "a server path in the answer: " << full->body;
  EXPECT_EQ(full->body.find("/data"), std::string::npos) << full->body;
  auto ready = c.Get("/readyz");
  EXPECT_EQ(ready->status, 503) << ready->body;
  {
    std::ifstream log(dir / "serve.log");
    const std::string text((std::istreambuf_iterator<char>(log)), {});
    EXPECT_NE(text.find("is full: uploads get 507"), std::string::npos) << text;
  }

  std::ofstream(dir / "free") << "";  // space returns
  for (int i = 0; i < 100 && c.Get("/readyz")->status != 200; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(c.Get("/readyz")->status, 200) << "ready again once there is room";
  httplib::MultipartFormDataItems items = {{"image", PartPng(1, false), "p.png", "image/png"}, {"product", "disc", "", ""}};
  auto again = c.Post("/v1/inspections", items);
  ASSERT_EQ(again->status, 202) << again->body;
  accepted.push_back(nlohmann::json::parse(again->body)["id"]);
  for (const auto& id : accepted) {  // nothing accepted was lost or left stalled
    std::string status;
    for (int i = 0; i < 600 && status != "done"; ++i) {
      auto r = c.Get(("/v1/inspections/" + id).c_str());
      ASSERT_TRUE(r && r->status == 200) << id;
      status = nlohmann::json::parse(r->body)["status"];
      if (status != "done") std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(status, "done") << id;
  }
}

}  // namespace
}  // namespace zeroqc
