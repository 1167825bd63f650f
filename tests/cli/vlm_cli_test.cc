// `zeroqc inspect --engine vlm` and `zeroqc bench --engine vlm` end to end against a model server
// on 127.0.0.1 that actually looks at the images: a bright spot is a defect, boxed on a 0-1000 scale.
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cli/run_zeroqc.h"
#include "core/base64.h"
#include "vlm/fake_model_server.h"

namespace zeroqc {
namespace {

namespace fs = std::filesystem;
using testing::FakeModelServer;
using testing::SeenRequest;
using testing::Zeroqc;

// The "model": judges the last image of an OpenAI-style request.
std::string Judge(const SeenRequest& q) {
  auto body = nlohmann::json::parse(q.body);
  std::string url;
  for (const auto& part : body["messages"][1]["content"])
    if (part["type"] == "image_url") url = part["image_url"]["url"];
  auto bytes = *Base64Decode(url.substr(url.find(',') + 1));
  cv::Mat gray = cv::imdecode(bytes, cv::IMREAD_GRAYSCALE);
  cv::Mat bright = gray > 200;
  nlohmann::json answer = {{"text", "checked"}, {"objects", nlohmann::json::array()}};
  if (cv::countNonZero(bright) == 0) {
    answer["objects"].push_back({{"name", "part"}, {"color", "grey"}, {"qc", "OK"}, {"reason", "like the reference"},
                                 {"bounding_box", {{"x_min", 0}, {"y_min", 0}, {"x_max", 1000}, {"y_max", 1000}}}});
  } else {
    cv::Rect r = cv::boundingRect(bright);
    auto n = [&](int v, int size) { return v * 1000 / size; };
    answer["objects"].push_back({{"name", "bright spot"}, {"color", "white"}, {"qc", "NOK"}, {"reason", "not on the reference"},
                                 {"bounding_box", {{"x_min", n(r.x, gray.cols)}, {"y_min", n(r.y, gray.rows)},
                                                   {"x_max", n(r.x + r.width, gray.cols)}, {"y_max", n(r.y + r.height, gray.rows)}}}});
  }
  // Fenced, as chat models like to answer.
  return nlohmann::json({{"choices", {{{"message", {{"role", "assistant"}, {"content", "```json\n" + answer.dump() + "\n```"}}}, {"finish_reason", "stop"}}}},
                         {"usage", {{"prompt_tokens", 800}, {"completion_tokens", 50}}}})
      .dump();
}

cv::Mat Part(bool spot) {
  cv::Mat m(120, 160, CV_8UC3, cv::Scalar(70, 80, 90));
  if (spot) cv::rectangle(m, {40, 30}, {79, 59}, cv::Scalar::all(255), cv::FILLED);
  return m;
}

fs::path MakeDataset(const fs::path& root) {
  for (auto d : {"train/good", "test/good", "test/spot", "ground_truth/spot"}) fs::create_directories(root / d);
  for (int i = 0; i < 3; ++i) cv::imwrite((root / "train/good" / (std::to_string(i) + ".png")).string(), Part(false));
  for (int i = 0; i < 3; ++i) cv::imwrite((root / "test/good" / (std::to_string(i) + ".png")).string(), Part(false));
  cv::Mat mask = cv::Mat::zeros(120, 160, CV_8U);
  cv::rectangle(mask, {40, 30}, {79, 59}, 255, cv::FILLED);
  for (int i = 0; i < 3; ++i) {
    cv::imwrite((root / "test/spot" / (std::to_string(i) + ".png")).string(), Part(true));
    cv::imwrite((root / "ground_truth/spot" / (std::to_string(i) + "_mask.png")).string(), mask);
  }
  return root;
}

std::string VlmFlags(const FakeModelServer& s) {
  return " --engine vlm --provider openai --box-format norm1000 --model fake-vl --base-url " + s.url() + "/v1 --backoff 1";
}

TEST(VlmCli, InspectPrintsTheModelsVerdictsInInputOrder) {
  FakeModelServer server([](const SeenRequest& q, int, httplib::Response& res) { res.set_content(Judge(q), "application/json"); });
  auto data = MakeDataset(testing::TempDir() / "parts");
  auto r = Zeroqc("inspect" + VlmFlags(server) + " --jobs 3 --refs " + (data / "train/good").string() + " " +
                  (data / "test/spot/0.png").string() + " " + (data / "test/good/0.png").string() + " " +
                  (data / "test/spot/1.png").string() + " " + (data / "missing.png").string());
  EXPECT_EQ(r.status, 3) << r.err;  // the missing file
  auto lines = testing::Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_EQ(lines[0]["verdict"], "NOK");
  EXPECT_EQ(lines[1]["verdict"], "OK");
  EXPECT_EQ(lines[2]["verdict"], "NOK");
  EXPECT_TRUE(lines[3].contains("error"));
  EXPECT_EQ(lines[0]["engine"], "vlm");
  EXPECT_EQ(lines[0]["model"], "fake-vl");
  EXPECT_EQ(lines[0]["usage"]["input_tokens"], 800) << lines[0].dump();
  EXPECT_EQ(lines[0]["objects"][0]["bounding_box"]["x_min"], 40);
  EXPECT_EQ(lines[0]["objects"][0]["bounding_box"]["x_max"], 80);
  EXPECT_EQ(server.requests().size(), 3u);
  // Three reference images were sent with each request.
  int images = 0;
  auto first = nlohmann::json::parse(server.requests()[0].body);
  for (const auto& part : first["messages"][1]["content"]) images += part["type"] == "image_url";
  EXPECT_EQ(images, 4);
}

TEST(VlmCli, BenchRunsTheReferenceDesignExperiment) {
  FakeModelServer server([](const SeenRequest& q, int, httplib::Response& res) { res.set_content(Judge(q), "application/json"); });
  auto dir = testing::TempDir();
  auto data = MakeDataset(dir / "parts");
  auto out = dir / "out";
  auto r = Zeroqc("bench " + data.string() + VlmFlags(server) + " --profile generic --shots 1 --seeds 2 --jobs 2 --no-progress --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream in(out / "metrics.json");
  auto m = nlohmann::json::parse(in);
  EXPECT_EQ(m["engine"], "vlm");
  EXPECT_EQ(m["accuracy"], 1.0);
  EXPECT_EQ(m["runs"].size(), 2u);
  EXPECT_GT(m["pixel_auroc"].get<double>(), 0.95);  // from the boxes
  EXPECT_EQ(server.requests().size(), 12u);         // 6 images x 2 seeds
  EXPECT_EQ(m["usage"]["input_tokens"], 12 * 800);
  EXPECT_EQ(m["usage"]["per_image"]["output_tokens"], 50);
  EXPECT_EQ(m["usage"]["requests"], 12);
  std::ifstream hin(out / "report.html");
  std::string html((std::istreambuf_iterator<char>(hin)), {});
  EXPECT_NE(html.find("id=\"usage\""), std::string::npos);
}

TEST(VlmCli, MissingModelIsABadArgument) {
  auto data = MakeDataset(testing::TempDir() / "parts");
  auto r = Zeroqc("inspect --engine vlm --provider ollama --refs " + (data / "train/good").string() + " " + (data / "test/good/0.png").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--model"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace zeroqc
