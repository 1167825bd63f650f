// `zeroqc bench` end to end with the real embedded engine on tiny synthetic datasets of plates
// (cli/synthetic_plates.h).
#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cli/run_zeroqc.h"
#include "cli/synthetic_plates.h"

namespace zeroqc {
namespace {

namespace fs = std::filesystem;
using testing::Zeroqc;
using testing::Counts;
using testing::MakeDataset;

nlohmann::json ReadJson(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

// Best balanced accuracy over every threshold, by brute force: the test's own reckoning of what
// metrics.json calls best_balanced_accuracy.
double BruteBestBalanced(const std::vector<std::pair<double, bool>>& scored) {
  double best = 0;
  std::vector<double> cuts = {-1e300};
  for (auto [s, nok] : scored) cuts.push_back(s);
  for (double t : cuts) {
    double tp = 0, tn = 0, pos = 0, neg = 0;
    for (auto [s, nok] : scored) {
      (nok ? pos : neg) += 1;
      if (nok && s > t) ++tp;
      if (!nok && s <= t) ++tn;
    }
    best = std::max(best, (tp / pos + tn / neg) / 2);
  }
  return best;
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
  for (const char* id : {"id=\"metrics\"", "id=\"roc\"", "id=\"latency\"", "id=\"gallery\"", "data:image/jpeg;base64,",
                         "id=\"verdict\"", "id=\"references\"", "class=\"operating-point\"", "class=\"y-tick\"", ">parts</text>",
                         ">image score</text>"})
    EXPECT_NE(html.find(id), std::string::npos) << id;
  // The report opens with its verdict in words, before any table.
  EXPECT_LT(html.find("id=\"verdict\""), html.find("<table"));
  // The first run's references, as thumbnails named by file.
  for (const auto& ref : m["runs"][0]["references"])
    EXPECT_NE(html.find("<figcaption>" + ref.get<std::string>() + "</figcaption>"), std::string::npos) << ref;
  // Whole parts in the confusion matrix: the first run's counts, no "12.0".
  const auto c = m["runs"][0]["confusion"];
  const std::string row = "<tr><td>NOK</td><td>" + std::to_string(c["tp"].get<int>()) + " <span";
  EXPECT_NE(html.find(row), std::string::npos) << row;
  // The best threshold's value, where every part had the same threshold.
  ASSERT_TRUE(m["runs"][0]["best_threshold"].is_number()) << m["runs"][0].dump();
  char best[32];
  std::snprintf(best, sizeof best, "%.3f", m["runs"][0]["best_threshold"].get<double>());
  EXPECT_NE(html.find("id=\"best-threshold\">" + std::string(best) + "<"), std::string::npos) << best;
}

// A setup that rejects every good part is named as the references' fault, with what to run.
TEST(BenchCli, WarnsWhenMostGoodPartsAreRejected) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto data = MakeDataset(dir / "plates");
  auto r = Zeroqc("bench " + data.string() + testing::kCache + " --shots 2 --threshold 0.0001 --no-progress --out " + (dir / "out").string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("100% of the good parts were NOK: the references miss how good parts look (zeroqc refs check)"), std::string::npos)
      << r.out;
  r = Zeroqc("bench " + data.string() + testing::kCache + " --shots 2 --no-progress --out " + (dir / "out2").string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.find("good parts were NOK"), std::string::npos) << r.out;
}

// --draw cover takes its references as refs suggest would, from a seeded part of the pool.
TEST(BenchCli, CoverDrawChoosesReferencesFromThePool) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto data = MakeDataset(dir / "plates");
  auto r = Zeroqc("bench " + data.string() + testing::kCache + " --shots 2 --seeds 2 --draw cover --no-progress --out " + (dir / "out").string());
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream mj(dir / "out" / "metrics.json");
  const auto m = nlohmann::json::parse(mj);
  EXPECT_EQ(m["draw"], "cover");
  ASSERT_EQ(m["runs"].size(), 2u) << m.dump();
  for (const auto& run : m["runs"]) {
    ASSERT_EQ(run["references"].size(), 2u) << run.dump();
    for (const auto& ref : run["references"]) EXPECT_TRUE(fs::exists(data / "train" / "good" / fs::path(ref.get<std::string>()).filename()));
  }
  r = Zeroqc("bench " + data.string() + " --shots 2 --draw best --out " + (dir / "out2").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--draw"), std::string::npos) << r.err;
}

TEST(BenchCli, SuiteOfTwoSetsWritesTheSuiteTableAndCalibrationGap) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto a = MakeDataset(dir / "plates_a", {3, 3, 2, 2}, 5), b = MakeDataset(dir / "plates_b", {3, 3, 2, 2}, 9);
  auto out = dir / "suite";
  auto r = Zeroqc("bench " + a.string() + " " + b.string() + testing::kCache + " --shots 2 --seeds 2 --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("| **mean of 2 sets** |"), std::string::npos) << r.out;

  auto suite = ReadJson(out / "suite.json");
  ASSERT_EQ(suite["sets"].size(), 2u);
  EXPECT_EQ(suite["sets"][0]["name"], "plates_a");
  EXPECT_EQ(suite["sets"][1]["name"], "plates_b");
  for (const char* k : {"auroc", "balanced_accuracy", "f1", "recall", "specificity", "pixel_auroc", "pro", "calibration_gap"}) {
    ASSERT_TRUE(suite["mean"][k].is_number()) << k;
    ASSERT_TRUE(suite["spread"][k].is_number()) << k;
    const double x = suite["sets"][0][k].get<double>(), y = suite["sets"][1][k].get<double>();
    EXPECT_NEAR(suite["mean"][k].get<double>(), (x + y) / 2, 1e-9) << k;
    EXPECT_NEAR(suite["spread"][k].get<double>(), std::abs(x - y) / std::sqrt(2.0), 1e-9) << k;
    EXPECT_TRUE(suite["sets"][0]["spread"][k].is_number()) << "sd over seeds of " << k;
  }

  // The calibration gap, recomputed here from the per-image results of each seed.
  for (const auto& set : {"plates_a", "plates_b"}) {
    auto m = ReadJson(out / set / "metrics.json");
    std::map<uint64_t, std::vector<std::pair<double, bool>>> by_seed;
    std::ifstream in(out / set / "results.jsonl");
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line);
      by_seed[j["bench"]["seed"].get<uint64_t>()].push_back({j["score"].get<double>(), j["bench"]["expected"] == "NOK"});
    }
    ASSERT_EQ(by_seed.size(), 2u);
    double gap_sum = 0;
    for (const auto& run : m["runs"]) {
      const double best = BruteBestBalanced(by_seed[run["seed"].get<uint64_t>()]);
      EXPECT_NEAR(run["best_balanced_accuracy"].get<double>(), best, 1e-9);
      EXPECT_NEAR(run["calibration_gap"].get<double>(), best - run["balanced_accuracy"].get<double>(), 1e-9);
      EXPECT_GE(run["calibration_gap"].get<double>(), 0.0);
      gap_sum += best - run["balanced_accuracy"].get<double>();
    }
    EXPECT_NEAR(m["calibration_gap"].get<double>(), gap_sum / 2, 1e-9);
    EXPECT_TRUE(fs::exists(out / set / "report.html"));
    EXPECT_TRUE(m["scores"]["good"].is_array());
  }
  std::ifstream hin(out / "report.html");
  std::string html((std::istreambuf_iterator<char>(hin)), {});
  EXPECT_NE(html.find("id=\"suite-table\""), std::string::npos);
  EXPECT_NE(html.find("plates_a/report.html"), std::string::npos);
  size_t histograms = 0;
  for (size_t p = 0; (p = html.find("class=\"threshold\"", p)) != std::string::npos; ++p) ++histograms;
  EXPECT_EQ(histograms, 2u) << "one score histogram with a threshold line per set";
}

// A line's proportions: every good test plate and a seeded draw of the defective ones.
TEST(BenchCli, ADefectShareScoresEveryGoodPartAndADrawOfDefects) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto data = MakeDataset(dir / "plates", {4, 6, 2, 2});  // 6 good, 4 defective
  auto out = dir / "out";
  auto r = Zeroqc("bench " + data.string() + testing::kCache + " --shots 1 --seeds 2 --defect-share 0.25 --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("6 good and 2 defective test images (of 10)"), std::string::npos) << r.err;
  auto m = ReadJson(out / "metrics.json");
  EXPECT_EQ(m["images"], 8);
  std::map<uint64_t, std::vector<std::string>> by_seed;  // the same draw for every seed
  std::ifstream in(out / "results.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    by_seed[j["bench"]["seed"].get<uint64_t>()].push_back(j["image"]["path"].get<std::string>());
  }
  ASSERT_EQ(by_seed.size(), 2u);
  for (auto& [seed, paths] : by_seed) {
    std::sort(paths.begin(), paths.end());
    EXPECT_EQ(paths, by_seed.begin()->second) << "seed " << seed;
    EXPECT_EQ(std::count_if(paths.begin(), paths.end(), [](const std::string& p) { return p.find("/test/good/") != std::string::npos; }), 6);
  }
}

TEST(BenchCli, ZeroShotBenchRanksDefectsWithoutReferences) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto data = MakeDataset(dir / "plates", {2, 10, 2, 2}, 11);
  auto out = dir / "zs";
  auto r = Zeroqc("bench " + data.string() + " --shots 0 --no-progress --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  auto m = ReadJson(out / "metrics.json");
  EXPECT_EQ(m["shots"], 0);
  EXPECT_EQ(m["runs"][0]["references"].size(), 0u) << "zero-shot draws no reference";
  EXPECT_EQ(m["runs"][0]["calibration"]["batch"], 14);
  EXPECT_GE(m["auroc"].get<double>(), 0.9) << m.dump();
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
  // A suite stops before the first run when any of its folders is wrong.
  r = Zeroqc("bench " + data.string() + " " + (dir / "nothing").string() + " --out " + (dir / "out2").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_FALSE(fs::exists(dir / "out2"));
  // Zero-shot needs a batch: this test folder has only 7 images.
  r = Zeroqc("bench " + data.string() + " --shots 0 --out " + (dir / "out3").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("at least 8"), std::string::npos) << r.err;
  // A defect share is a fraction, needs good and defective test images, and is not --online's rate.
  r = Zeroqc("bench " + data.string() + " --defect-share 1.5 --out " + (dir / "out4").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("between 0 and 1"), std::string::npos) << r.err;
  fs::remove_all(data / "test" / "good");
  fs::create_directories(data / "test" / "good");
  r = Zeroqc("bench " + data.string() + " --defect-share 0.2 --out " + (dir / "out5").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("0 good"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out4") || fs::exists(dir / "out5"));
  EXPECT_EQ(Zeroqc("bench " + data.string() + " --online --defect-share 0.2").status, 2);
}

// Issue 11, item 3: defect types named from one example per type. The synthetic plates have two
// types that look nothing alike (a scratch, a missing hole): one example each names the rest.
TEST(BenchCli, TypeShotsNameDefectTypesFromExamples) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  Counts n;
  n.scratch = n.missing = 5;
  auto data = MakeDataset(dir / "plates", n);
  auto out = dir / "out";
  auto r = Zeroqc("bench " + data.string() + testing::kCache + " --shots 4 --seeds 2 --type-shots 1 --no-progress --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("type accuracy"), std::string::npos) << r.out;
  auto m = ReadJson(out / "metrics.json");
  ASSERT_TRUE(m.contains("types")) << m.dump();
  EXPECT_DOUBLE_EQ(m["types"]["chance"].get<double>(), 0.5);
  EXPECT_EQ(m["types"]["examples_per_type"], 1);
  for (const auto& run : m["runs"]) {
    EXPECT_EQ(run["types"]["named"], 8) << "4 of each type named, 1 of each is the example";
    EXPECT_EQ(run["types"]["per_type"]["scratch"]["named"], 4);
  }
  EXPECT_GE(m["types"]["accuracy"].get<double>(), 0.9) << m["types"].dump();
}

}  // namespace
}  // namespace zeroqc

namespace zeroqc {
namespace {

// Issue 11, item 4: the online benchmark streams the pool past an engine started from K
// references, corrects its false alarms as references, and scores the test set every few parts.
TEST(BenchCli, OnlineBenchWritesTheLearningCurveAndTheOperatorsWork) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto data = MakeDataset(dir / "plates", {12, 3, 2, 2});
  auto r = Zeroqc("bench " + data.string() + " --online --shots 2 --seeds 2 --eval-every 4 --quiet --out " + (dir / "out").string());
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream in(dir / "out" / "metrics.json");
  auto m = nlohmann::json::parse(in);
  const auto& o = m["online"];
  EXPECT_EQ(o["shots"], 2);
  EXPECT_EQ(o["seeds"], 2);
  const auto& curve = o["curve"];
  ASSERT_EQ(curve.size(), 4u) << "0, 4, 8 and the 10th part";
  EXPECT_EQ(curve[0]["parts"], 0);
  EXPECT_EQ(curve[1]["parts"], 4);
  EXPECT_EQ(curve[3]["parts"], 10);
  EXPECT_EQ(curve[0]["references"]["mean"], 2.0);
  for (const auto& run : o["runs"]) {
    EXPECT_EQ(run["test_images"], 7);
    EXPECT_EQ(run["curve"].back()["references"], 2 + run["false_alarms"].get<int>()) << "each false alarm became a reference";
    EXPECT_GE(run["reviews"].get<int>(), run["false_alarms"].get<int>());
  }
  EXPECT_GE(o["final_accuracy"]["mean"].get<double>(), 0.0);
  EXPECT_LE(o["final_accuracy"]["mean"].get<double>(), 1.0);
  EXPECT_NE(r.out.find("false alarms corrected"), std::string::npos) << r.out;
  // Defects mixed into the stream come out of the test set; --online needs K below the pool.
  r = Zeroqc("bench " + data.string() + " --online --shots 2 --defect-rate 0.2 --quiet --out " + (dir / "out2").string());
  ASSERT_EQ(r.status, 0) << r.err;
  auto m2 = nlohmann::json::parse(std::ifstream(dir / "out2" / "metrics.json"));
  const auto& run = m2["online"]["runs"][0];
  EXPECT_GT(run["stream_defects"].get<int>(), 0);
  EXPECT_EQ(run["test_images"].get<int>() + run["stream_defects"].get<int>(), 7);
  r = Zeroqc("bench " + data.string() + " --online --out " + (dir / "out3").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--shots"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace zeroqc
