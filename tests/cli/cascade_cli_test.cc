// The cascade end to end: `zeroqc bench --engine cascade` against the ground-truth model server
// (its route shares, requests and tokens per part recomputed from results.jsonl), and a product of
// `zeroqc serve` with the cascade engine against a model server in the test.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "cli/run_zeroqc.h"
#include "vlm/fake_model_server.h"

namespace zeroqc {
namespace {

namespace fs = std::filesystem;

// Starts a program whose first stdout line is "port N"; returns its pid and port.
std::pair<pid_t, int> SpawnWithPort(const std::vector<std::string>& argv) {
  int out[2];
  EXPECT_EQ(pipe(out), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  FILE* f = fdopen(out[0], "r");
  char line[64] = {0};
  int port = 0;
  if (fgets(line, sizeof line, f)) std::sscanf(line, "port %d", &port);
  fclose(f);
  return {pid, port};
}

TEST(CascadeCli, BenchReportsRoutesRequestsAndTokensPerPart) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  const auto dataset = testing::Datasets() / "mvtec-toothbrush";
  auto [pid, port] = SpawnWithPort({(testing::BinaryDir() / "tests" / "truth_model_server").string(), "--dataset", dataset.string(),
                                    "--accuracy", "0.93"});
  ASSERT_GT(port, 0);
  const auto out = testing::TempDir() / "bench";
  auto r = testing::Zeroqc("bench " + dataset.string() + " --engine cascade --provider openai --model truth --base-url http://127.0.0.1:" +
                           std::to_string(port) + " --shots 8 --model-refs 2 --seed 2 --no-progress --out " + out.string() + testing::kCache);
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("to the model"), std::string::npos) << r.out;

  std::ifstream m(out / "metrics.json");
  auto metrics = nlohmann::json::parse(m);
  ASSERT_TRUE(metrics.contains("cascade")) << metrics.dump();
  const auto& c = metrics["cascade"];
  // Recomputed from the results, one line per part.
  std::ifstream in(out / "results.jsonl");
  int parts = 0, sent = 0, requests = 0;
  double input = 0;
  std::map<std::string, int> routes;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    ++parts;
    ++routes[j.at("route").get<std::string>()];
    const int a = j.value("attempts", 0);
    sent += a > 0;
    requests += a;
    if (j.contains("usage")) input += j["usage"].value("input_tokens", 0.0);
    if (j["route"] == "model") {
      EXPECT_EQ(j["stages"].size(), 2u);
      // The stand-in bills 1,200 tokens an image: 2 references + the part + at most 3 crops, not 8 references.
      EXPECT_LE(j["usage"]["input_tokens"].get<double>() / a, 1200 * (2 + 1 + 3) + 400) << line;
    }
    if (j["route"] == "screen_ok" || j["route"] == "screen_nok") EXPECT_EQ(a, 0);
  }
  ASSERT_EQ(parts, 42);
  EXPECT_GT(sent, 0) << "some parts are uncertain";
  EXPECT_LT(sent, parts) << "some parts are clear";
  EXPECT_NEAR(c["share_to_model"].get<double>(), double(sent) / parts, 1e-9);
  EXPECT_NEAR(c["requests_per_part"].get<double>(), double(requests) / parts, 1e-9);
  EXPECT_NEAR(c["input_tokens_per_part"].get<double>(), input / parts, 1e-6);
  double shares = 0;
  for (const auto& [route, x] : c["routes"].items()) {
    EXPECT_EQ(x["parts"].get<int>(), routes[route]) << route;
    EXPECT_GT(x["latency_ms"]["p50"].get<double>(), 0);
    shares += x["share"].get<double>();
  }
  EXPECT_NEAR(shares, 1.0, 1e-9);
}

// `zeroqc serve` on a fresh data folder with an admin key, on a free port (0 when it did not start).
struct Serve {
  pid_t pid = 0;
  int port = 0;
  std::string token;
  void Authorise(httplib::Client& c) const {
    c.set_bearer_token_auth(token.c_str());
    c.set_read_timeout(120, 0);
  }
  ~Serve() {  // a test that stopped at an assertion still stops its server (else ctest waits on it)
    if (pid > 0 && waitpid(pid, nullptr, WNOHANG) == 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  }
};

Serve StartServe(const fs::path& dir) {
  Serve s;
  auto key = testing::Zeroqc("keys create --scope admin --name test --data " + (dir / "data").string());
  EXPECT_EQ(key.status, 0) << key.err;
  if (key.status != 0) return s;
  s.token = key.out.substr(0, key.out.find('\n'));
  std::tie(s.pid, s.port) = SpawnWithPort({testing::ZeroqcBinary().string(), "serve", "--data", (dir / "data").string(), "--port", "0",
                                           "--cache", (testing::BinaryDir() / "test-cache").string(),
                                           "--allow-private-models"});  // the fake model is on 127.0.0.1
  return s;
}

TEST(CascadeCli, AServiceProductWithTheCascadeEngine) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  testing::FakeModelServer model([](const testing::SeenRequest&, int, httplib::Response& res) {
    const std::string answer = R"({"text":"bristles missing","objects":[{"name":"missing bristles","color":"white","qc":"NOK","reason":"a gap in the bristles","bounding_box":null}]})";
    res.set_content(nlohmann::json({{"choices", {{{"message", {{"content", answer}}}, {"finish_reason", "stop"}}}},
                                    {"usage", {{"prompt_tokens", 3000}, {"completion_tokens", 30}}}})
                        .dump(),
                    "application/json");
  });
  const Serve serve = StartServe(testing::TempDir());
  ASSERT_GT(serve.port, 0);
  const pid_t pid = serve.pid;
  httplib::Client c("127.0.0.1", serve.port);
  serve.Authorise(c);
  // A band around everything: every part goes to the model, whose verdict decides.
  nlohmann::json product = {{"name", "brush"}, {"engine", "cascade"},
                            {"settings", {{"provider", "openai"}, {"model", "judge"}, {"base_url", model.url()}, {"low", 0.01}, {"high", 100}}}};
  auto p = c.Post("/v1/products", product.dump(), "application/json");
  ASSERT_TRUE(p && p->status == 201) << (p ? p->body : "no answer");
  const auto root = testing::Datasets() / "mvtec-toothbrush";
  for (const char* n : {"000.png", "001.png"}) {
    std::ifstream f(root / "train/good" / n, std::ios::binary);
    httplib::MultipartFormDataItems ref = {{"image", std::string(std::istreambuf_iterator<char>(f), {}), n, "image/png"}};
    ASSERT_EQ(c.Post("/v1/products/brush/references", ref)->status, 201);
  }
  std::ifstream f(root / "test/good/000.png", std::ios::binary);
  httplib::MultipartFormDataItems items = {{"image", std::string(std::istreambuf_iterator<char>(f), {}), "part.png", "image/png"},
                                           {"product", "brush", "", ""}};
  auto r = c.Post("/v1/inspections?wait=true&timeout_ms=120000", items);
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
  auto j = nlohmann::json::parse(r->body);
  const auto& res = j["result"];
  EXPECT_EQ(res["engine"], "cascade");
  EXPECT_EQ(res["route"], "model");
  EXPECT_EQ(j["verdict"], "NOK") << "the model's verdict decides an uncertain part";
  EXPECT_EQ(res["objects"][0]["name"], "missing bristles");
  EXPECT_EQ(res["usage"]["input_tokens"], 3000);
  ASSERT_EQ(res["stages"].size(), 2u);
  EXPECT_EQ(res["stages"][0]["engine"], "patch");
  EXPECT_EQ(model.requests().size(), 1u);
}

// A product with a line window (settings.line_window) and the foreground mask (settings.foreground):
// the service keeps the product's engine, so its recent parts judge the next one; a window out of
// bounds, a mask that is not a boolean, and either on the vlm engine, are refused.
TEST(CascadeCli, AServiceProductWithALineWindow) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  const Serve serve = StartServe(testing::TempDir());
  ASSERT_GT(serve.port, 0);
  const pid_t pid = serve.pid;
  httplib::Client c("127.0.0.1", serve.port);
  serve.Authorise(c);
  for (const char* bad : {R"({"name":"brush","settings":{"line_window":3}})", R"({"name":"brush","settings":{"line_window":"many"}})",
                          R"({"name":"brush","settings":{"line_window":500}})", R"({"name":"brush","engine":"vlm","settings":{"line_window":8}})"}) {
    auto r = c.Post("/v1/products", bad, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << bad;
    EXPECT_NE(r->body.find("line_window"), std::string::npos) << r->body;
  }
  for (const char* bad : {R"({"name":"brush","settings":{"foreground":"yes"}})", R"({"name":"brush","settings":{"foreground":1}})",
                          R"({"name":"brush","engine":"vlm","settings":{"foreground":true}})"}) {
    auto r = c.Post("/v1/products", bad, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << bad;
    EXPECT_NE(r->body.find("foreground"), std::string::npos) << r->body;
  }
  for (const char* bad : {R"({"name":"brush","settings":{"backbone":"resnet"}})", R"({"name":"brush","settings":{"backbone":"/etc/passwd"}})",
                          R"({"name":"brush","settings":{"backbone":5}})", R"({"name":"brush","engine":"vlm","settings":{"backbone":"lite2"}})"}) {
    auto r = c.Post("/v1/products", bad, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << bad;
    EXPECT_NE(r->body.find("backbone"), std::string::npos) << r->body;
  }
  for (const char* bad : {R"({"name":"brush","settings":{"rotations":3}})", R"({"name":"brush","settings":{"rotations":"4"}})",
                          R"({"name":"brush","engine":"vlm","settings":{"rotations":4}})"}) {
    auto r = c.Post("/v1/products", bad, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << bad;
    EXPECT_NE(r->body.find("rotations"), std::string::npos) << r->body;
  }
  ASSERT_EQ(c.Get("/v1/products/brush")->status, 404) << "a refused product is not stored";
  auto p = c.Post("/v1/products", R"({"name":"brush","settings":{"line_window":7,"foreground":true}})", "application/json");
  ASSERT_TRUE(p && p->status == 201) << (p ? p->body : "no answer");
  // The product remembers the backbone it is built with: the server's default at its creation.
  EXPECT_EQ(nlohmann::json::parse(p->body)["settings"]["backbone"], "lite2") << p->body;
  const auto root = testing::Datasets() / "mvtec-toothbrush";
  auto upload = [&](const fs::path& file, bool reference) {
    std::ifstream f(file, std::ios::binary);
    httplib::MultipartFormDataItems items = {{"image", std::string(std::istreambuf_iterator<char>(f), {}), file.filename().string(), "image/png"}};
    if (reference) return c.Post("/v1/products/brush/references", items);
    items.push_back({"product", "brush", "", ""});
    return c.Post("/v1/inspections?wait=true&timeout_ms=120000", items);
  };
  ASSERT_EQ(upload(root / "train/good/000.png", true)->status, 201);
  std::vector<nlohmann::json> results;
  char name[32];
  for (int i = 1; i <= 8; ++i) {
    std::snprintf(name, sizeof name, "train/good/%03d.png", i);
    auto r = upload(root / name, false);
    ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
    results.push_back(nlohmann::json::parse(r->body)["result"]);
  }
  auto calibration = c.Get("/v1/products/brush/calibration");
  ASSERT_TRUE(calibration && calibration->status == 200) << (calibration ? calibration->body : "no answer");
  EXPECT_EQ(nlohmann::json::parse(calibration->body)["calibration"]["foreground_mask"], true) << calibration->body;
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(results[i]["text"].get<std::string>().find("recent parts"), std::string::npos) << "warming up: " << i;
    EXPECT_EQ(results[i]["calibration"], "references") << results[i].dump();
  }
  EXPECT_NE(results[7]["text"].get<std::string>().find("recent parts"), std::string::npos) << results[7].dump();
  EXPECT_EQ(results[7]["calibration"], "line") << results[7].dump();
  EXPECT_NE(results[7]["threshold"], results[0]["threshold"]) << "the line's own threshold";
}

}  // namespace
}  // namespace zeroqc
