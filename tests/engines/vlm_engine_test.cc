// The vlm engine end to end against a model server on 127.0.0.1: images fitted and encoded once,
// answers in every shape a model gives them, repair, errors, boxes back in original pixels.
#include "engines/vlm/vlm_engine.h"

#include <cmath>
#include <fstream>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "core/base64.h"
#include "test_support.h"
#include "vlm/fake_model_server.h"

namespace zeroqc {
namespace {

using testing::FakeModelServer;
using testing::SeenRequest;

std::filesystem::path Demo(const char* name) { return testing::SourceDir() / "demo/aws-nova-samples" / name; }

std::string OllamaBody(const std::string& content) {
  return nlohmann::json({{"message", {{"role", "assistant"}, {"content", content}}}, {"done", true}, {"done_reason", "stop"},
                         {"prompt_eval_count", 1200}, {"eval_count", 60}})
      .dump();
}

struct Setup {
  std::unique_ptr<VlmEngine> engine;
  Image qc;
};

Setup Make(FakeModelServer& server, VlmEngineOptions o = {}, std::vector<std::filesystem::path> refs = {Demo("cubesponge_reference.jpg")}) {
  ProviderOptions po;
  po.model = "qwen2.5vl:7b";
  po.base_url = server.url();
  po.backoff_ms = 1;
  if (o.profile.name.empty()) o.profile = *LoadProfile("generic");
  o.model = po.model;
  auto e = VlmEngine::Create(*MakeProvider("ollama", po), o, refs);
  EXPECT_TRUE(e.ok()) << e.status().message();
  return {e.ok() ? std::move(*e) : nullptr, *LoadImage(Demo("cubesponge_nok.jpg"))};
}

TEST(VlmEngine, FencedNokAnswerBecomesBoxesInOriginalPixels) {
  FakeModelServer server([](const SeenRequest&, int, httplib::Response& res) {
    res.set_content(OllamaBody("```json\n{\"text\":\"a corner is torn off\",\"objects\":[{\"name\":\"torn corner\",\"color\":\"yellow\","
                               "\"qc\":\"NOK\",\"reason\":\"material missing\",\"bounding_box\":{\"x_min\":100,\"y_min\":200,\"x_max\":300,\"y_max\":400}}]}\n```"),
                    "application/json");
  });
  auto s = Make(server);
  const int W = s.qc.bgr.cols, H = s.qc.bgr.rows;
  ASSERT_GT(W, 1024);  // a large photo: it must be fitted before sending
  auto insp = s.engine->Inspect(s.qc);
  const auto& r = insp.result;
  ASSERT_FALSE(r.error) << *r.error;
  EXPECT_EQ(r.verdict, "NOK");
  EXPECT_EQ(r.engine, "vlm");
  EXPECT_EQ(r.model, "qwen2.5vl:7b");
  EXPECT_EQ(r.text, "a corner is torn off");
  ASSERT_EQ(r.objects.size(), 1u);
  EXPECT_EQ(r.objects[0].box.x_min, int(std::floor(0.1 * W)));  // 0-1000 scale of the original
  EXPECT_EQ(r.objects[0].box.y_min, int(std::floor(0.2 * H)));
  EXPECT_EQ(r.objects[0].box.x_max, int(std::ceil(0.3 * W)));
  EXPECT_EQ(r.objects[0].box.y_max, int(std::ceil(0.4 * H)));
  EXPECT_EQ(r.usage["input_tokens"], 1200);
  EXPECT_EQ(r.attempts, 1);
  // Both images were fitted within 1024 px and sent as PNG.
  auto body = nlohmann::json::parse(server.requests()[0].body);
  for (const auto& b64 : body["messages"][1]["images"]) {
    auto bytes = *Base64Decode(b64.get<std::string>());
    cv::Mat img = cv::imdecode(bytes, cv::IMREAD_COLOR);
    EXPECT_EQ(std::max(img.cols, img.rows), 1024);
    EXPECT_EQ(bytes[1], 'P');
  }
  auto j = ToJson(r);
  EXPECT_EQ(j["objects"][0]["bounding_box"]["x_min"], r.objects[0].box.x_min);
  EXPECT_TRUE(j.contains("usage") && j.contains("attempts") && j.contains("latency_ms"));
}

TEST(VlmEngine, SingleQuotedOkAnswer) {
  FakeModelServer server([](const SeenRequest&, int, httplib::Response& res) {
    res.set_content(OllamaBody("{'text': 'The part matches the reference.', 'objects': [{'name': 'sponge', 'color': 'yellow', 'qc': 'OK', "
                               "'reason': 'no visible difference', 'bounding_box': {'x_min': 0, 'y_min': 0, 'x_max': 1000, 'y_max': 1000}}]}"),
                    "application/json");
  });
  auto s = Make(server);
  auto r = s.engine->Inspect(s.qc).result;
  ASSERT_FALSE(r.error) << *r.error;
  EXPECT_EQ(r.verdict, "OK");
  EXPECT_EQ(r.score, 0.0);
  EXPECT_EQ(r.objects[0].box.x_max, s.qc.bgr.cols);
}

TEST(VlmEngine, UnusableAnswerIsRepairedOnce) {
  FakeModelServer server([](const SeenRequest&, int i, httplib::Response& res) {
    res.set_content(OllamaBody(i == 0 ? "The sponge has a torn corner on the left." : R"({"text":"torn","objects":[{"name":"tear","color":"yellow","qc":"NOK","reason":"torn","bounding_box":{"x_min":1,"y_min":1,"x_max":50,"y_max":50}}]})"),
                    "application/json");
  });
  auto s = Make(server);
  auto r = s.engine->Inspect(s.qc).result;
  ASSERT_FALSE(r.error) << *r.error;
  EXPECT_EQ(r.verdict, "NOK");
  EXPECT_EQ(r.attempts, 2);
  EXPECT_EQ(r.usage["input_tokens"].get<double>(), 2400);  // both calls counted
  auto body = nlohmann::json::parse(server.requests()[1].body);
  ASSERT_EQ(body["messages"].size(), 4u);
  EXPECT_EQ(body["messages"][2]["content"], "The sponge has a torn corner on the left.");
  EXPECT_NE(body["messages"][3]["content"].get<std::string>().find("could not be used"), std::string::npos);
}

TEST(VlmEngine, GarbageTwiceIsAnErrorNeverASilentOk) {
  FakeModelServer server([](const SeenRequest&, int, httplib::Response& res) { res.set_content(OllamaBody("{\"objects\": [{\"qc\": \"perhaps\"}]}"), "application/json"); });
  auto s = Make(server);
  auto r = s.engine->Inspect(s.qc).result;
  ASSERT_TRUE(r.error);
  EXPECT_NE(r.error->find("unusable"), std::string::npos) << *r.error;
  EXPECT_TRUE(ToJson(r)["verdict"].is_null());
  EXPECT_EQ(server.requests().size(), 2u);
}

TEST(VlmEngine, ProviderFailureIsAnErrorResult) {
  FakeModelServer server([](const SeenRequest&, int, httplib::Response& res) { res.status = 502; });
  auto s = Make(server);
  auto r = s.engine->Inspect(s.qc).result;
  ASSERT_TRUE(r.error);
  EXPECT_NE(r.error->find("HTTP 502"), std::string::npos) << *r.error;
  EXPECT_EQ(server.requests().size(), 3u);
}

TEST(VlmEngine, ProfileFileSetsSizeFormatBoxesAndReferences) {
  auto dir = testing::TempDir();
  std::filesystem::copy_file(Demo("cubesponge_reference.jpg"), dir / "good.jpg");
  std::ofstream(dir / "sponge.json") << R"({"name":"sponge","defect_types":["tears"],"acceptable_variations":["shade of yellow"],
    "image_max_side":512,"image_format":"jpg","box_format":"pixels","top_k":1,"references":["good.jpg"]})";
  FakeModelServer server([](const SeenRequest&, int, httplib::Response& res) {
    res.set_content(OllamaBody(R"({"text":"t","objects":[{"name":"tear","color":"y","qc":"NOK","reason":"r","bounding_box":{"x_min":256,"y_min":0,"x_max":512,"y_max":100}}]})"),
                    "application/json");
  });
  VlmEngineOptions o;
  auto p = LoadProfile((dir / "sponge.json").string());
  ASSERT_TRUE(p.ok()) << p.status().message();
  o.profile = *p;
  auto s = Make(server, o, {});
  auto r = s.engine->Inspect(s.qc).result;
  ASSERT_FALSE(r.error) << *r.error;
  EXPECT_EQ(r.objects[0].box.x_min, s.qc.bgr.cols / 2);  // pixels of the 512-wide image sent, scaled back
  EXPECT_EQ(r.objects[0].box.x_max, s.qc.bgr.cols);
  auto body = nlohmann::json::parse(server.requests()[0].body);
  EXPECT_NE(body["messages"][0]["content"].get<std::string>().find("shade of yellow"), std::string::npos);
  EXPECT_NE(body["messages"][1]["content"].get<std::string>().find("in pixels"), std::string::npos);
  auto bytes = *Base64Decode(body["messages"][1]["images"][0].get<std::string>());
  EXPECT_EQ(bytes[0], 0xFF);  // JPEG
  EXPECT_EQ(cv::imdecode(bytes, cv::IMREAD_COLOR).cols, 512);
  EXPECT_EQ(body["options"]["top_k"], 1);
}

}  // namespace
}  // namespace zeroqc
