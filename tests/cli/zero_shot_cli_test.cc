// Zero-shot end to end: `inspect --zero-shot` and `refs suggest` on a synthetic batch of plates
// with planted defects (cli/synthetic_plates.h); no reference image anywhere.
#include <random>

#include <gtest/gtest.h>

#include "cli/run_zeroqc.h"
#include "cli/synthetic_plates.h"

namespace zeroqc {
namespace {

namespace fs = std::filesystem;
using testing::Defect;
using testing::Zeroqc;

// 12 good plates and two defective ones (a scratch and a missing hole) in one folder, returned
// in file-name order; the defective ones are named so that they sort among the good ones.
std::vector<std::string> Batch(const fs::path& dir, std::vector<cv::Mat>* masks = nullptr) {
  fs::create_directories(dir);
  std::mt19937 rng(21);
  std::vector<std::string> files;
  for (int i = 0; i < 14; ++i) {
    const Defect d = i == 4 ? Defect::kScratch : i == 9 ? Defect::kMissingHole : Defect::kNone;
    cv::Mat mask;
    cv::Mat img = testing::Plate(rng, d, &mask);
    char name[32];
    std::snprintf(name, sizeof name, "part%02d%s.png", i, d == Defect::kNone ? "" : "_defect");
    cv::imwrite((dir / name).string(), img);
    files.push_back((dir / name).string());
    if (masks) masks->push_back(mask);
  }
  return files;
}

TEST(ZeroShotCli, InspectFindsAndBoxesThePlantedDefects) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  std::vector<cv::Mat> masks;
  auto files = Batch(dir / "batch", &masks);
  std::string args;
  for (const auto& f : files) args += " " + f;
  auto r = Zeroqc("inspect --zero-shot" + args);
  ASSERT_EQ(r.status, 0) << r.err;
  auto lines = testing::Lines(r.out);
  ASSERT_EQ(lines.size(), files.size());
  double lowest_defect = 1e9, highest_good = 0;
  int good_ok = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& j = lines[i];
    EXPECT_EQ(j["engine"], "patch");
    const bool defect = files[i].find("_defect") != std::string::npos;
    if (!defect) {
      highest_good = std::max(highest_good, j["score"].get<double>());
      good_ok += j["verdict"] == "OK";
      continue;
    }
    lowest_defect = std::min(lowest_defect, j["score"].get<double>());
    EXPECT_EQ(j["verdict"], "NOK") << j.dump();
    ASSERT_FALSE(j["objects"].empty());
    EXPECT_NE(j["text"].get<std::string>().find("other parts of the batch"), std::string::npos);
    // The first box overlaps the planted defect.
    const auto& b = j["objects"][0]["bounding_box"];
    cv::Rect box(cv::Point(b["x_min"].get<int>(), b["y_min"].get<int>()), cv::Point(b["x_max"].get<int>(), b["y_max"].get<int>()));
    EXPECT_GT(cv::countNonZero(masks[i](box & cv::Rect(0, 0, 224, 224))), 0) << j.dump();
  }
  EXPECT_GT(lowest_defect, highest_good) << "every planted defect scores above every good part";
  EXPECT_GE(good_ok, 10) << "at most two false alarms among 12 good parts";
}

TEST(ZeroShotCli, TooSmallABatchIsRefused) {
  auto dir = testing::TempDir();
  auto files = Batch(dir / "batch");
  auto r = Zeroqc("inspect --zero-shot " + files[0] + " " + files[1] + " " + files[2]);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("at least 8"), std::string::npos) << r.err;
  EXPECT_EQ(Zeroqc("inspect --zero-shot --refs " + dir.string() + " " + files[0]).status, 2);
}

TEST(ZeroShotCli, RefsSuggestNeverPicksThePlantedDefects) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  Batch(dir / "day1");
  auto out = dir / "refs";
  auto r = Zeroqc("refs suggest --from " + (dir / "day1").string() + " --count 6 --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  int copied = 0;
  for (const auto& e : fs::directory_iterator(out)) {
    ++copied;
    EXPECT_EQ(e.path().filename().string().find("_defect"), std::string::npos) << e.path();
  }
  EXPECT_EQ(copied, 6);
  EXPECT_NE(r.err.find("_defect"), std::string::npos) << "the most unusual part is named: " << r.err;
  // A folder that already holds references is never mixed into.
  r = Zeroqc("refs suggest --from " + (dir / "day1").string() + " --count 2 --out " + out.string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("already holds images"), std::string::npos) << r.err;
  // More than half of the batch is refused: unusual parts must be able to stay out.
  r = Zeroqc("refs suggest --from " + (dir / "day1").string() + " --count 9 --out " + (dir / "refs2").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_FALSE(fs::exists(dir / "refs2"));
}

// Issue 28: from the toothbrush pool (48 good brushes: blue, red, and 8 yellow ones, 040-047),
// the "most typical" four were near-identical blue brushes, and every yellow good brush was then a
// false reject. Covering the batch's variation must take a yellow one.
TEST(ZeroShotCli, RefsSuggestCoversTheBatchsVariants) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto out = dir / "refs";
  auto r = Zeroqc("refs suggest --quiet --from " + (testing::Datasets() / "mvtec-toothbrush/train/good").string() +
                  " --count 4 --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  int copied = 0, yellow = 0;
  for (const auto& e : fs::directory_iterator(out)) {
    ++copied;
    const int n = std::stoi(e.path().stem().string());
    yellow += n >= 40 && n <= 47;
  }
  EXPECT_EQ(copied, 4);
  EXPECT_GE(yellow, 1) << r.out;
  EXPECT_LE(yellow, 2) << "covering, not chasing one variant: " << r.out;
}

}  // namespace
}  // namespace zeroqc
