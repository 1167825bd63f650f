// The cascade engine with a screen whose score is set by the test and a model server on 127.0.0.1:
// each route, the crops and their coordinates in the original image, the fallback when the model
// fails, explained NOK parts, and the token accounting.
#include "engines/cascade/cascade_engine.h"

#include <regex>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "test_support.h"
#include "vlm/fake_model_server.h"

namespace zeroqc {
namespace {

using testing::FakeModelServer;
using testing::SeenRequest;

// Score = `score` (threshold 1), a hot spot in the heat map over the original pixels `spot`.
class FixedScreen : public Engine {
 public:
  FixedScreen(double score, cv::Rect spot, std::vector<double> line = {}) : score_(score), spot_(spot), line_(std::move(line)) {}
  std::string name() const override { return "patch"; }
  Inspection Inspect(const Image& image) override {
    Inspection out;
    out.peer_scores = line_;
    out.result = NewResult(image);
    out.result.threshold = 1.0;
    out.result.score = score_;
    out.result.verdict = score_ > 1.0 ? "NOK" : "OK";
    out.result.text = "screen";
    if (score_ > 1.0) out.result.objects.push_back({"anomaly", "gray", "NOK", "differs from the references", {spot_.x, spot_.y, spot_.br().x, spot_.br().y}, score_});
    // The map is 1/8 of the original size, as the engine's own maps are smaller than the image.
    const auto size = image.size();
    out.heatmap = cv::Mat(size.height / 8, size.width / 8, CV_32F, cv::Scalar(0.1));
    cv::rectangle(out.heatmap, cv::Rect(spot_.x / 8, spot_.y / 8, spot_.width / 8, spot_.height / 8), cv::Scalar(score_), cv::FILLED);
    return out;
  }
  nlohmann::json Calibration() const override { return {{"threshold", 1.0}, {"loo_scores", {0.7, 0.75, 0.8}}}; }

 private:
  double score_;
  cv::Rect spot_;
  std::vector<double> line_;  // the scores of the line's parts that judged it (none: the references)
};

std::string OllamaBody(const std::string& content) {
  return nlohmann::json({{"message", {{"role", "assistant"}, {"content", content}}}, {"done", true}, {"done_reason", "stop"},
                         {"prompt_eval_count", 1500}, {"eval_count", 40}})
      .dump();
}

const std::string kNokAnswer =
    R"({"text":"a scratch","objects":[{"name":"scratch","color":"black","qc":"NOK","reason":"a dark line","bounding_box":null}]})";
const std::string kOkAnswer = R"({"text":"a good part","objects":[]})";

std::unique_ptr<CascadeEngine> Make(FakeModelServer& server, double score, cv::Rect spot, CascadeOptions c = {}, int attempts = 3,
                                     std::vector<double> line = {}) {
  ProviderOptions po;
  po.model = "judge";
  po.base_url = server.url();
  po.backoff_ms = 1;
  po.max_attempts = attempts;
  VlmEngineOptions o;
  o.profile = *LoadProfile("generic");
  o.model = po.model;
  auto refs = testing::TempDir() / "ref.png";
  cv::imwrite(refs.string(), cv::Mat(400, 600, CV_8UC3, cv::Scalar(80, 90, 100)));
  auto judge = VlmEngine::Create(*MakeProvider("ollama", po), o, {refs});
  EXPECT_TRUE(judge.ok()) << judge.status().message();
  auto e = CascadeEngine::Create(std::make_unique<FixedScreen>(score, spot, line), std::move(*judge), c);
  EXPECT_TRUE(e.ok()) << e.status().message();
  return std::move(*e);
}

// A 600x400 decode of a 2400x1600 photo: boxes and crops must speak of the photo's pixels.
Image Photo() {
  Image img;
  img.bgr = cv::Mat(400, 600, CV_8UC3, cv::Scalar(80, 90, 100));
  cv::line(img.bgr, {300, 120}, {340, 150}, cv::Scalar(0, 0, 0), 3);
  img.original = {2400, 1600};
  return img;
}

TEST(Cascade, TheBandComesFromTheReferencesScores) {
  auto [low, high] = CascadeBand({{"threshold", 1.0}, {"loo_scores", {0.7, 0.75, 0.8}}});
  EXPECT_DOUBLE_EQ(low, 0.75);
  EXPECT_DOUBLE_EQ(high, 1.5);
  // One reference: the threshold's +-50% uncertainty is the wider band.
  std::tie(low, high) = CascadeBand({{"threshold", 1.0}, {"loo_scores", {0.9, 0.92, 0.95}}, {"references", 1}});
  EXPECT_NEAR(low, 1 / 1.5, 1e-12);
  EXPECT_NEAR(high, 1.5, 1e-12);
  std::tie(low, high) = CascadeBand({{"threshold", 1.0}, {"loo_scores", {0.9, 0.92, 0.95}}, {"references", 100}});
  EXPECT_NEAR(low, 0.92, 1e-12);
  EXPECT_NEAR(high, 1.16, 1e-12);
  std::tie(low, high) = CascadeBand(nullptr);  // nothing to go by: a fixed band
  EXPECT_DOUBLE_EQ(low, 0.8);
  EXPECT_DOUBLE_EQ(high, 1.5);
}

// A part the line's recent parts judged (a line window) gets the band of those parts' scores and
// the threshold they gave (CascadeLineBand), unless the band was set.
TEST(Cascade, APartJudgedByTheLineHasTheLinesBand) {
  std::vector<double> line(16, 0.95);  // 16 parts close under the threshold: the prior decides
  auto [low, high] = CascadeLineBand(line, 1.0);
  EXPECT_NEAR(low, 1 / 1.125, 1e-12);
  EXPECT_NEAR(high, 1.125, 1e-12);
  // A window of mostly defects: the band reaches down to the median of the parts it judged OK (the
  // median of all 16 would be a defect's score), and no higher than the prior.
  std::vector<double> defects(10, 1.4);
  defects.insert(defects.end(), {0.5, 0.6, 0.7, 0.7, 0.8, 0.9});
  std::tie(low, high) = CascadeLineBand(defects, 1.0);
  EXPECT_NEAR(low, 0.7, 1e-12);
  EXPECT_NEAR(high, 1.125, 1e-12);
  FakeModelServer server([](const SeenRequest&, int, httplib::Response& res) { res.set_content(OllamaBody(kNokAnswer), "application/json"); });
  const cv::Rect spot(1200, 480, 160, 120);
  // 1.3 x threshold: uncertain by the references' band [0.75, 1.5], clear by the line's.
  auto by_refs = Make(server, 1.3, spot)->Inspect(Photo()).result;
  EXPECT_EQ(by_refs.route, "model");
  auto by_line = Make(server, 1.3, spot, {}, 3, line)->Inspect(Photo()).result;
  EXPECT_EQ(by_line.route, "screen_nok");
  EXPECT_EQ(by_line.stages[0]["peers"], 16);
  EXPECT_NEAR(by_line.stages[0]["band"][1].get<double>(), 1.125, 1e-12);
  CascadeOptions set;
  set.high = 2.0;  // a given bound holds for every part
  auto wide = Make(server, 1.3, spot, set, 3, line)->Inspect(Photo()).result;
  EXPECT_EQ(wide.route, "model");
  EXPECT_NEAR(wide.stages[0]["band"][0].get<double>(), 1 / 1.125, 1e-12);
  EXPECT_EQ(server.requests().size(), 2u);
}

TEST(Cascade, ClearPartsNeverReachTheModel) {
  FakeModelServer server([](const SeenRequest&, int, httplib::Response& res) { res.set_content(OllamaBody(kNokAnswer), "application/json"); });
  const cv::Rect spot(1200, 480, 160, 120);
  auto ok = Make(server, 0.5, spot)->Inspect(Photo()).result;
  EXPECT_EQ(ok.route, "screen_ok");
  EXPECT_EQ(ok.verdict, "OK");
  EXPECT_EQ(ok.engine, "cascade");
  auto nok = Make(server, 3.0, spot)->Inspect(Photo()).result;
  EXPECT_EQ(nok.route, "screen_nok");
  EXPECT_EQ(nok.verdict, "NOK");
  EXPECT_EQ(nok.attempts, 0);
  ASSERT_EQ(nok.stages.size(), 1u);
  EXPECT_EQ(nok.stages[0]["stage"], "screen");
  EXPECT_EQ(server.requests().size(), 0u) << "no request for a clear part";
}

TEST(Cascade, AnUncertainPartIsDecidedByTheModelWithTheScreensCrops) {
  FakeModelServer server([](const SeenRequest&, int, httplib::Response& res) { res.set_content(OllamaBody(kNokAnswer), "application/json"); });
  const cv::Rect spot(1200, 480, 160, 120);  // in the 2400x1600 original
  auto engine = Make(server, 0.95, spot);      // under the threshold, inside the band [0.75, 1.5]
  auto r = engine->Inspect(Photo()).result;
  ASSERT_FALSE(r.error) << *r.error;
  EXPECT_EQ(r.route, "model");
  EXPECT_EQ(r.verdict, "NOK") << "the model decides, though the score is under the threshold";
  ASSERT_EQ(r.objects.size(), 1u);
  EXPECT_EQ(r.objects[0].name, "scratch");
  // The model gave no box: the scratch is placed where the screen saw the most, in original pixels.
  EXPECT_TRUE(r.objects[0].has_box);
  EXPECT_NEAR(r.objects[0].box.x_min, spot.x, 16);
  EXPECT_NEAR(r.objects[0].box.y_max, spot.br().y, 16);
  ASSERT_EQ(r.stages.size(), 2u);
  EXPECT_EQ(r.stages[1]["stage"], "model");
  EXPECT_EQ(r.stages[1]["crops"], 1);
  // Tokens: the model's bill is in the result and its stage.
  EXPECT_EQ(r.usage["input_tokens"], 1500);
  EXPECT_EQ(r.stages[1]["usage"]["output_tokens"], 40);
  EXPECT_EQ(r.attempts, 1);

  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  auto body = nlohmann::json::parse(seen[0].body);
  const auto& user = body["messages"][1];
  EXPECT_EQ(user["images"].size(), 3u) << "reference, the part, one crop";
  const std::string text = user["content"];
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, std::regex(R"(the region \((\d+), (\d+)\)-\((\d+), (\d+)\) of the image to inspect \(original 2400x1600)")))
      << text;
  EXPECT_NEAR(std::stoi(m[1]), spot.x, 16);
  EXPECT_NEAR(std::stoi(m[2]), spot.y, 16);
  EXPECT_NEAR(std::stoi(m[3]), spot.br().x, 16);
  EXPECT_NEAR(std::stoi(m[4]), spot.br().y, 16);
  EXPECT_NE(text.find("0.95 times its threshold"), std::string::npos) << text;
}

TEST(Cascade, AModelSayingOkClearsAnUncertainPart) {
  FakeModelServer server([](const SeenRequest&, int, httplib::Response& res) { res.set_content(OllamaBody(kOkAnswer), "application/json"); });
  auto r = Make(server, 1.2, {1200, 480, 160, 120})->Inspect(Photo()).result;  // over the threshold, in the band
  EXPECT_EQ(r.route, "model");
  EXPECT_EQ(r.verdict, "OK");
  EXPECT_TRUE(r.objects.empty());
}

TEST(Cascade, AFailingModelNeverMakesASilentOk) {
  FakeModelServer server([](const SeenRequest&, int, httplib::Response& res) { res.status = 500; });
  auto r = Make(server, 1.2, {1200, 480, 160, 120}, {}, 2)->Inspect(Photo()).result;
  ASSERT_FALSE(r.error) << "the part is still judged";
  EXPECT_EQ(r.route, "model_failed");
  EXPECT_EQ(r.verdict, "NOK") << "the screen's verdict stands";
  EXPECT_NE(r.text.find("the model failed"), std::string::npos) << r.text;
  EXPECT_TRUE(r.stages[1].contains("error"));
  EXPECT_EQ(server.requests().size(), 2u) << "retried, then given up";

  FakeModelServer garbage([](const SeenRequest&, int, httplib::Response& res) { res.set_content(OllamaBody("no idea"), "application/json"); });
  auto g = Make(garbage, 0.9, {1200, 480, 160, 120})->Inspect(Photo()).result;
  EXPECT_EQ(g.route, "model_failed");
  EXPECT_EQ(g.verdict, "OK") << "under the threshold: the screen said OK, and that stands";
}

TEST(Cascade, ExplainedNokPartsKeepTheScreensBoxesAndGetTheModelsWords) {
  FakeModelServer server([](const SeenRequest&, int, httplib::Response& res) { res.set_content(OllamaBody(kNokAnswer), "application/json"); });
  CascadeOptions c;
  c.explain_nok = true;
  const cv::Rect spot(1200, 480, 160, 120);
  auto r = Make(server, 3.0, spot, c)->Inspect(Photo()).result;  // clearly NOK: sent only to be explained
  EXPECT_EQ(r.route, "explained");
  EXPECT_EQ(r.verdict, "NOK");
  ASSERT_EQ(r.objects.size(), 1u);
  EXPECT_EQ(r.objects[0].name, "scratch");
  EXPECT_EQ(r.objects[0].box.x_min, spot.x) << "the screen's box is the authority on location";
  EXPECT_NE(r.objects[0].reason.find("a dark line"), std::string::npos);
}

}  // namespace
}  // namespace zeroqc
