// The bench pipeline with a fake engine whose verdicts are known, so every metric can be checked
// by hand: dataset layout, K-shot draws, parallel inspection, summary, results lines and the report.
#include "bench/runner.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "bench/report.h"
#include "bench/summary.h"
#include "test_support.h"

namespace zeroqc {
namespace {

namespace fs = std::filesystem;

// Score = brightest pixel / 255, threshold 0.5, heat map = gray / 255 in threshold units.
class BrightSpotEngine : public Engine {
 public:
  std::string name() const override { return "bright-spot"; }
  Inspection Inspect(const Image& img) override {
    Inspection out;
    auto& r = out.result;
    r.engine = name();
    r.image_path = img.path;
    r.width = img.bgr.cols, r.height = img.bgr.rows;
    r.threshold = 0.5;
    cv::Mat gray;
    cv::cvtColor(img.bgr, gray, cv::COLOR_BGR2GRAY);
    double hi;
    cv::minMaxLoc(gray, nullptr, &hi);
    r.score = hi / 255;
    r.verdict = r.score > r.threshold ? "NOK" : "OK";
    gray.convertTo(out.heatmap, CV_32F, 1.0 / 255 / r.threshold);
    return out;
  }
};

cv::Mat Part(int spot_value, cv::Rect spot) {
  cv::Mat m(64, 64, CV_8UC3, cv::Scalar::all(60));
  if (spot_value) m(spot).setTo(cv::Scalar::all(spot_value));
  return m;
}

// test/good: g0 g1 clean (TN), g2 with a bright spot (FP), g3 corrupt (error -> counted NOK, FP).
// test/scratch: s0 s1 bright 16x16 defects (TP), s2 faint (FN), all with masks.
// test/dent: d0 bright (TP), no mask.
fs::path MakeDataset(const fs::path& root) {
  const cv::Rect defect(20, 20, 16, 16), spot(4, 4, 8, 8);
  for (auto d : {"train/good", "test/good", "test/scratch", "test/dent", "ground_truth/scratch"}) fs::create_directories(root / d);
  for (int i = 0; i < 5; ++i) cv::imwrite((root / "train/good" / ("t" + std::to_string(i) + ".png")).string(), Part(0, {}));
  cv::imwrite((root / "test/good/g0.png").string(), Part(0, {}));
  cv::imwrite((root / "test/good/g1.png").string(), Part(0, {}));
  cv::imwrite((root / "test/good/g2.png").string(), Part(255, spot));
  std::ofstream(root / "test/good/g3.png") << "\x89PNG\r\n\x1a\n this is not an image";
  cv::imwrite((root / "test/scratch/s0.png").string(), Part(255, defect));
  cv::imwrite((root / "test/scratch/s1.png").string(), Part(255, defect));
  cv::imwrite((root / "test/scratch/s2.png").string(), Part(100, defect));
  cv::Mat mask = cv::Mat::zeros(64, 64, CV_8U);
  mask(defect).setTo(255);
  for (auto n : {"s0", "s1", "s2"}) cv::imwrite((root / "ground_truth/scratch" / (std::string(n) + "_mask.png")).string(), mask);
  cv::imwrite((root / "test/dent/d0.png").string(), Part(255, defect));
  return root;
}

struct Bench {
  Dataset dataset;
  std::vector<Run> runs;
  std::vector<std::vector<fs::path>> references_seen;
};

Bench RunOn(const fs::path& root, BenchOptions opt) {
  Bench b;
  auto d = LoadDataset(root);
  EXPECT_TRUE(d.ok()) << d.status().message();
  b.dataset = *d;
  auto factory = [&b](const std::vector<fs::path>& refs) -> StatusOr<std::unique_ptr<Engine>> {
    b.references_seen.push_back(refs);
    return std::unique_ptr<Engine>(std::make_unique<BrightSpotEngine>());
  };
  auto runs = RunBench(b.dataset, factory, opt);
  EXPECT_TRUE(runs.ok()) << runs.status().message();
  if (runs.ok()) b.runs = *runs;
  return b;
}

TEST(BenchDataset, ReadsTheMvtecLayout) {
  auto d = LoadDataset(MakeDataset(testing::TempDir()));
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->pool.size(), 5u);
  ASSERT_EQ(d->samples.size(), 8u);
  EXPECT_EQ(d->samples[0].type, "dent");  // types sorted, then names
  EXPECT_TRUE(d->samples[0].mask.empty());
  EXPECT_EQ(d->samples[1].type, "good");
  EXPECT_FALSE(d->samples[1].nok);
  EXPECT_EQ(d->samples[5].image.filename(), "s0.png");
  EXPECT_EQ(d->samples[5].mask.filename(), "s0_mask.png");
  EXPECT_TRUE(d->has_masks());
}

TEST(BenchDataset, MissingFoldersAreNamed) {
  auto root = testing::TempDir();
  auto d = LoadDataset(root);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("MVTec layout"), std::string::npos) << d.status().message();
  fs::create_directories(root / "train/good");
  cv::imwrite((root / "train/good/a.png").string(), Part(0, {}));
  d = LoadDataset(root);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("test"), std::string::npos) << d.status().message();
}

TEST(BenchDataset, ShotsAreSeededSortedAndDistinct) {
  std::vector<fs::path> pool;
  for (int i = 0; i < 10; ++i) pool.push_back("p" + std::to_string(i) + ".png");
  auto a = DrawShots(pool, 4, 7);
  EXPECT_EQ(a, DrawShots(pool, 4, 7));
  EXPECT_NE(a, DrawShots(pool, 4, 8));
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(std::set<fs::path>(a.begin(), a.end()).size(), 4u);
  // Pinned (checked against an independent splitmix64 + Fisher-Yates): the draw must not change
  // between machines or library versions.
  EXPECT_EQ(DrawShots(pool, 3, 1), (std::vector<fs::path>{"p1.png", "p5.png", "p8.png"}));
  EXPECT_EQ(DrawShots(pool, 99, 1), pool);
}

TEST(BenchDataset, ADefectShareKeepsEveryGoodPartAndDrawsDefects) {
  auto d = LoadDataset(MakeDataset(testing::TempDir()));  // 4 good, 4 defective
  ASSERT_TRUE(d.ok()) << d.status().message();
  auto count = [](const Dataset& x, bool nok) {
    return std::count_if(x.samples.begin(), x.samples.end(), [&](const Sample& s) { return s.nok == nok; });
  };
  auto line = WithDefectShare(*d, 0.2, 3);  // 4 good: 0.2 of the stream is 1 defect
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_EQ(count(*line, false), 4);
  EXPECT_EQ(count(*line, true), 1);
  EXPECT_EQ(line->pool, d->pool);
  // Same seed, same draw; the draws of all seeds together reach more than one defect.
  std::set<fs::path> drawn;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    auto a = WithDefectShare(*d, 0.2, seed), b = WithDefectShare(*d, 0.2, seed);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(a->samples.size(), b->samples.size());
    for (size_t i = 0; i < a->samples.size(); ++i) {
      EXPECT_EQ(a->samples[i].image, b->samples[i].image);
      if (a->samples[i].nok) drawn.insert(a->samples[i].image);
    }
  }
  EXPECT_GT(drawn.size(), 1u);
  auto half = WithDefectShare(*d, 0.5, 1);  // as many defects as good parts: all 4, order kept
  ASSERT_TRUE(half.ok());
  EXPECT_EQ(half->samples.size(), d->samples.size());
  for (size_t i = 0; i < d->samples.size(); ++i) EXPECT_EQ(half->samples[i].image, d->samples[i].image);
  EXPECT_EQ(WithDefectShare(*d, 0.9, 1)->samples.size(), d->samples.size());  // never more than there are
  // Not a fraction, or nothing to draw from: a clear error.
  for (double bad : {0.0, 1.0, -0.5, 2.0, std::nan("")}) {
    auto r = WithDefectShare(*d, bad, 1);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("between 0 and 1"), std::string::npos) << r.status().message();
  }
  Dataset no_good = *d;
  std::erase_if(no_good.samples, [](const Sample& s) { return !s.nok; });
  auto r = WithDefectShare(no_good, 0.2, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("0 good"), std::string::npos) << r.status().message();
}

TEST(BenchRunner, MetricsMatchTheHandCount) {
  auto b = RunOn(MakeDataset(testing::TempDir()), {});
  ASSERT_EQ(b.runs.size(), 1u);
  const RunMetrics& m = b.runs[0].metrics;
  EXPECT_EQ(m.confusion.tp, 3);
  EXPECT_EQ(m.confusion.fn, 1);
  EXPECT_EQ(m.confusion.fp, 2);
  EXPECT_EQ(m.confusion.tn, 2);
  EXPECT_EQ(m.errors, 1);
  EXPECT_DOUBLE_EQ(m.cls.accuracy, 5.0 / 8);
  EXPECT_DOUBLE_EQ(m.cls.precision, 3.0 / 5);
  EXPECT_DOUBLE_EQ(m.cls.f1, 6.0 / 9);
  // Positives 1,1,1,0.39 against negatives 0.235,0.235,1,error(+inf): 9.5 of 16 pairs.
  EXPECT_DOUBLE_EQ(m.auroc, 9.5 / 16);
  EXPECT_DOUBLE_EQ(m.per_type.at("scratch").auroc, 7.0 / 12);
  EXPECT_DOUBLE_EQ(m.per_type.at("dent").auroc, 2.5 / 4);
  EXPECT_TRUE(std::isnan(m.per_type.at("good").auroc));
  EXPECT_EQ(m.per_type.at("good").correct, 2);
  EXPECT_EQ(m.per_type.at("scratch").correct, 2);
  // Pixels: 3 masked 16x16 defects (two at 1.0, one at 0.39) against 23808 background pixels at
  // 0.235, of which g2's 64 spot pixels are at 1.0: AUROC = 1 - 2*64 / (3*23808).
  EXPECT_NEAR(m.pixel_auroc, 1 - 128.0 / 71424, 1e-4);
  EXPECT_GT(m.pro, 0.99);
  EXPECT_LT(m.pro, 1.0);
  EXPECT_EQ(b.runs[0].references.size(), 5u);  // default: the whole pool
  EXPECT_EQ(b.runs[0].threshold, 0.5);
  for (const auto& r : b.runs[0].records) EXPECT_GT(r.latency_ms, 0);
}

TEST(BenchRunner, ParallelJobsGiveTheSameResultsInOrder) {
  auto root = MakeDataset(testing::TempDir());
  BenchOptions two;
  two.jobs = 3;
  auto a = RunOn(root, {}), b = RunOn(root, two);
  ASSERT_EQ(a.runs[0].records.size(), b.runs[0].records.size());
  for (size_t i = 0; i < a.runs[0].records.size(); ++i) {
    EXPECT_EQ(b.runs[0].records[i].sample, i);
    EXPECT_EQ(a.runs[0].records[i].result.score, b.runs[0].records[i].result.score);
  }
  EXPECT_EQ(a.runs[0].metrics.auroc, b.runs[0].metrics.auroc);
}

// An engine that learns from the line (its threshold moves with every part) and notes what it saw:
// scores and thresholds grow together, so only scores in threshold units rank the parts right.
class DriftingEngine : public BrightSpotEngine {
 public:
  explicit DriftingEngine(std::vector<fs::path>* seen) : seen_(seen) {}
  Inspection Inspect(const Image& img) override {
    Inspection out = BrightSpotEngine::Inspect(img);
    seen_->push_back(img.path);
    const double f = double(seen_->size());
    out.result.score *= f, out.result.threshold *= f;
    return out;
  }

 private:
  std::vector<fs::path>* seen_;
};

TEST(BenchRunner, AStreamWarmsUpOnGoodPartsThenInspectsOneAtATimeInASeededOrder) {
  auto root = MakeDataset(testing::TempDir());
  auto d = LoadDataset(root);
  ASSERT_TRUE(d.ok());
  auto run = [&](uint64_t seed, std::vector<fs::path>* seen) {
    BenchOptions o;
    o.shots = 1, o.first_seed = seed, o.jobs = 2, o.stream = true, o.warmup = 3;
    auto runs = RunBench(*d, [&](const auto&) -> StatusOr<std::unique_ptr<Engine>> { return std::unique_ptr<Engine>(std::make_unique<DriftingEngine>(seen)); }, o);
    EXPECT_TRUE(runs.ok());
    return std::move((*runs)[0]);
  };
  std::vector<fs::path> a, b, c;
  const zeroqc::Run ra = run(1, &a);
  run(1, &b);
  run(2, &c);
  ASSERT_EQ(a.size(), 3 + d->samples.size() - 1) << "3 good parts, then every test image but the unreadable one";
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(a[i].parent_path(), root / "train/good");
    EXPECT_EQ(std::count(ra.references.begin(), ra.references.end(), a[i]), 0) << "not the reference";
  }
  EXPECT_EQ(a, b) << "the same seed, the same order";
  EXPECT_NE(a, c) << "another seed, another order";
  // Ranked in threshold units, the parts rank as the brightest spot does (raw scores grow with time).
  auto plain = RunOn(root, {});
  EXPECT_DOUBLE_EQ(ra.metrics.auroc, plain.runs[0].metrics.auroc);
  EXPECT_DOUBLE_EQ(ra.metrics.best_balanced_accuracy, plain.runs[0].metrics.best_balanced_accuracy);
}

TEST(BenchRunner, SeedsDrawTheirOwnShots) {
  BenchOptions opt;
  opt.shots = 2;
  opt.seeds = 3;
  opt.first_seed = 11;
  auto b = RunOn(MakeDataset(testing::TempDir()), opt);
  ASSERT_EQ(b.runs.size(), 3u);
  ASSERT_EQ(b.references_seen.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(b.runs[i].seed, 11 + i);
    EXPECT_EQ(b.references_seen[i], DrawShots(b.dataset.pool, 2, 11 + i));
    EXPECT_EQ(b.runs[i].references, b.references_seen[i]);
  }
  EXPECT_FALSE(b.runs[0].records[0].map.empty());  // the first run keeps maps for the report
  EXPECT_TRUE(b.runs[1].records[0].map.empty());
  opt.shots = 6;  // more than the pool
  auto d = LoadDataset(MakeDataset(testing::TempDir()));
  auto runs = RunBench(*d, [](const auto&) -> StatusOr<std::unique_ptr<Engine>> { return Internal("unused"); }, opt);
  ASSERT_FALSE(runs.ok());
  EXPECT_NE(runs.status().message().find("only 5"), std::string::npos) << runs.status().message();
}

TEST(BenchRunner, SummaryAndResultLines) {
  BenchOptions opt;
  opt.seeds = 2;
  auto b = RunOn(MakeDataset(testing::TempDir()), opt);
  auto s = Summarize(b.dataset, b.runs, {"bright-spot", 5, 2, 1});
  for (const char* k : {"accuracy", "precision", "recall", "specificity", "f1", "balanced_accuracy", "auroc",
                        "pixel_auroc", "pro", "throughput_ips"})
    ASSERT_TRUE(s[k].is_number()) << k << ": " << s.dump();
  EXPECT_DOUBLE_EQ(s["accuracy"].get<double>(), 5.0 / 8);
  EXPECT_DOUBLE_EQ(s["spread"]["accuracy"].get<double>(), 0.0);  // a deterministic engine
  for (const char* k : {"p50", "p90", "p99", "min", "max"}) EXPECT_TRUE(s["latency_ms"][k].is_number()) << k;
  int counted = 0;
  for (int c : s["latency_ms"]["histogram"]["counts"]) counted += c;
  EXPECT_EQ(counted, 16);  // 8 images, 2 runs
  EXPECT_EQ(s["per_type"]["scratch"]["images"], 3);
  EXPECT_NEAR(s["per_type"]["scratch"]["accuracy"].get<double>(), 2.0 / 3, 1e-12);
  EXPECT_TRUE(s["per_type"]["good"]["auroc"].is_null());
  EXPECT_TRUE(s["per_type"]["dent"]["pixel_auroc"].is_null());  // dent has no masks
  EXPECT_EQ(s["errors"], 2);
  ASSERT_EQ(s["runs"].size(), 2u);
  EXPECT_EQ(s["runs"][1]["seed"], 2);

  auto line = RecordJson(b.dataset, b.runs[0], b.runs[0].records[4]);  // g3, the corrupt one
  EXPECT_TRUE(line.contains("error"));
  EXPECT_EQ(line["bench"]["expected"], "OK");
  EXPECT_EQ(line["bench"]["predicted"], "NOK");
  EXPECT_EQ(line["bench"]["correct"], false);
}

TEST(BenchReport, SelfContainedPageWithEverySection) {
  auto b = RunOn(MakeDataset(testing::TempDir()), {});
  auto s = Summarize(b.dataset, b.runs, {"bright-spot", 5, 1, 1});
  ReportOptions ro;
  ro.gallery = 3;
  std::string html = ReportHtml(s, b.dataset, b.runs, ro);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  for (const char* id : {"id=\"metrics\"", "id=\"confusion\"", "id=\"per-type\"", "id=\"roc\"", "id=\"latency\"",
                         "id=\"gallery\"", "id=\"runs\""})
    EXPECT_NE(html.find(id), std::string::npos) << id;
  EXPECT_NE(html.find("<polyline"), std::string::npos);  // the ROC curve
  EXPECT_NE(html.find("<rect x="), std::string::npos);   // histogram bars
  // Worst first: the unreadable image, then the missed faint scratch, then a false alarm.
  auto err = html.find("error: "), missed = html.find("missed defect"), alarm = html.find("false alarm");
  ASSERT_NE(err, std::string::npos);
  ASSERT_NE(missed, std::string::npos);
  ASSERT_NE(alarm, std::string::npos);
  EXPECT_EQ(html.find("closest call"), std::string::npos);  // 3 misses fill 3 places
  const size_t gallery = html.find("id=\"gallery\""), refs = html.find("id=\"references\"");
  ASSERT_NE(refs, std::string::npos);
  ASSERT_LT(refs, gallery);
  auto images = [&](size_t from, size_t to) {
    size_t n = 0;
    for (size_t p = from; (p = html.find("src=\"data:image/jpeg;base64,", p)) < to; ++p) ++n;
    return n;
  };
  EXPECT_EQ(images(refs, gallery), 5u);  // the first run's references
  EXPECT_EQ(images(gallery, std::string::npos), 2u);  // the corrupt image cannot be drawn; its caption says why
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_NE(html.find("0.625"), std::string::npos);  // accuracy 5/8 in the table
}

}  // namespace
}  // namespace zeroqc
