// `zeroqc bench` end to end with the real embedded engine on a tiny synthetic dataset made here:
// a machined plate with a grid of holes; defects are a scratch or a missing hole.
#include <random>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cli/run_zeroqc.h"

namespace zeroqc {
namespace {

namespace fs = std::filesystem;
using testing::Zeroqc;

enum class Defect { kNone, kScratch, kMissingHole };

// A plate with a 4x4 grid of holes, shifted and re-lit a little per image; `mask` gets the defect.
cv::Mat Plate(std::mt19937& rng, Defect defect, cv::Mat* mask) {
  std::uniform_int_distribution<int> shift(-3, 3), light(-8, 8);
  cv::Mat img(224, 224, CV_8UC3, cv::Scalar(40, 40, 40));
  const cv::Point off(shift(rng), shift(rng));
  const int base = 170 + light(rng);
  cv::rectangle(img, cv::Point(24, 24) + off, cv::Point(200, 200) + off, cv::Scalar::all(base), cv::FILLED);
  *mask = cv::Mat::zeros(img.size(), CV_8U);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) {
      cv::Point centre = cv::Point(52 + 40 * c, 52 + 40 * r) + off;
      if (defect == Defect::kMissingHole && r == 1 && c == 2) {
        cv::circle(*mask, centre, 10, 255, cv::FILLED);
        continue;
      }
      cv::circle(img, centre, 9, cv::Scalar(60, 60, 70), cv::FILLED);
    }
  if (defect == Defect::kScratch) {
    cv::line(img, cv::Point(60, 150) + off, cv::Point(150, 120) + off, cv::Scalar(30, 30, 30), 3);
    cv::line(*mask, cv::Point(60, 150) + off, cv::Point(150, 120) + off, 255, 5);
  }
  cv::Mat noise(img.size(), CV_8UC3);
  cv::randn(noise, 0, 3);
  return img + noise;
}

fs::path MakeDataset(const fs::path& root) {
  std::mt19937 rng(5);
  cv::Mat mask;
  auto write = [&](const std::string& dir, int n, Defect d) {
    fs::create_directories(root / dir);
    for (int i = 0; i < n; ++i) {
      char name[16];
      std::snprintf(name, sizeof name, "%03d", i);
      cv::imwrite((root / dir / (std::string(name) + ".png")).string(), Plate(rng, d, &mask));
      if (d == Defect::kNone) continue;
      auto gt = root / "ground_truth" / fs::path(dir).filename();
      fs::create_directories(gt);
      cv::imwrite((gt / (std::string(name) + "_mask.png")).string(), mask);
    }
  };
  write("train/good", 4, Defect::kNone);
  write("test/good", 3, Defect::kNone);
  write("test/scratch", 2, Defect::kScratch);
  write("test/missing_hole", 2, Defect::kMissingHole);
  return root;
}

TEST(BenchCli, WritesMetricsResultsAndReport) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto data = MakeDataset(dir / "plates");
  auto out = dir / "out";
  auto r = Zeroqc("bench " + data.string() + testing::kCache + " --shots 2 --seeds 2 --jobs 2 --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("accuracy"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("seed 2/2"), std::string::npos) << "progress on stderr: " << r.err;

  std::ifstream mj(out / "metrics.json");
  auto m = nlohmann::json::parse(mj);
  for (const char* k : {"accuracy", "precision", "recall", "specificity", "f1", "balanced_accuracy", "auroc",
                        "pixel_auroc", "pro", "throughput_ips"})
    ASSERT_TRUE(m[k].is_number()) << k << " in " << m.dump();
  for (const char* k : {"p50", "p90", "p99"}) EXPECT_GT(m["latency_ms"][k].get<double>(), 0) << k;
  EXPECT_EQ(m["shots"], 2);
  EXPECT_EQ(m["jobs"], 2);
  EXPECT_EQ(m["runs"].size(), 2u);
  EXPECT_NE(m["runs"][0]["references"], m["runs"][1]["references"]);
  EXPECT_EQ(m["per_type"]["scratch"]["images"], 2);
  EXPECT_EQ(m["per_type"]["missing_hole"]["images"], 2);
  // Scratches and missing holes on a clean plate are easy: the engine must rank them above good plates.
  EXPECT_GE(m["auroc"].get<double>(), 0.9) << m.dump();
  EXPECT_GE(m["pixel_auroc"].get<double>(), 0.8) << m.dump();

  auto lines = testing::Lines([&] {
    std::ifstream in(out / "results.jsonl");
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }());
  ASSERT_EQ(lines.size(), 14u);  // 7 images x 2 seeds
  for (const auto& l : lines) {
    EXPECT_EQ(l["engine"], "patch");
    EXPECT_TRUE(l["bench"].contains("correct"));
  }

  std::ifstream hin(out / "report.html");
  std::string html((std::istreambuf_iterator<char>(hin)), {});
  for (const char* id : {"id=\"metrics\"", "id=\"roc\"", "id=\"latency\"", "id=\"gallery\"", "data:image/jpeg;base64,"})
    EXPECT_NE(html.find(id), std::string::npos) << id;
}

TEST(BenchCli, BadDatasetsAndShotsExitWithTwo) {
  auto dir = testing::TempDir();
  auto r = Zeroqc("bench " + (dir / "nothing").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("not a folder"), std::string::npos) << r.err;
  auto data = MakeDataset(dir / "plates");
  r = Zeroqc("bench " + data.string() + " --shots 9 --out " + (dir / "out").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("only 4"), std::string::npos) << r.err;
  EXPECT_EQ(Zeroqc("bench " + data.string() + " --engine nonsense").status, 2);
}

}  // namespace
}  // namespace zeroqc
