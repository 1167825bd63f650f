#include "engines/patch/patch_engine.h"
#include "engines/patch/threshold.h"

#include <fstream>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "test_support.h"

namespace zeroqc {
namespace {

PatchEngineOptions Options() {
  PatchEngineOptions o;
  o.backbone_spec = testing::BackboneSpecPath();
  o.cache_dir = testing::BinaryDir() / "test-cache";  // per build tree: a fresh clone starts cold
  return o;
}

TEST(PatchEngine, RefusesAnEmptyReferenceSetAndAMissingBackbone) {
  auto none = PatchEngine::Create(Options(), {});
  EXPECT_EQ(none.status().code(), Code::kInvalidArgument);
  EXPECT_NE(none.status().message().find("add photos of good parts"), std::string::npos);
  PatchEngineOptions o = Options();
  o.backbone_spec = "/nonexistent/spec.json";
  auto missing = PatchEngine::Create(o, {"/x.png"});
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("setup.sh"), std::string::npos);
}

TEST(PatchEngine, CorruptReferenceIsReportedByName) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  std::ofstream(dir / "bad.png") << "\x89PNG\r\n\x1a\n garbage";
  PatchEngineOptions o = Options();
  o.cache_dir.clear();
  auto e = PatchEngine::Create(o, {dir / "bad.png"});
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("bad.png"), std::string::npos) << e.status().message();
}

// The acceptance run of issue 2: MVTec AD toothbrush, the 48 train/good images as references,
// the 42 test images decided with the automatically calibrated threshold.
TEST(PatchEngine, ToothbrushWithAllReferencesMeetsTheAcceptanceBar) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  const auto root = testing::Datasets() / "mvtec-toothbrush";
  auto refs = ListImages(root / "train/good");
  ASSERT_TRUE(refs.ok());
  ASSERT_EQ(refs->size(), 48u);
  auto engine = PatchEngine::Create(Options(), *refs);
  ASSERT_TRUE(engine.ok()) << engine.status().message();

  int tp = 0, fn = 0, tn = 0, fp = 0, localised = 0;
  for (const char* kind : {"good", "defective"}) {
    const bool defective = std::string(kind) == "defective";
    for (const auto& path : *ListImages(root / "test" / kind)) {
      auto img = LoadImage(path);
      ASSERT_TRUE(img.ok());
      auto r = (*engine)->Inspect(*img).result;
      ASSERT_FALSE(r.error) << *r.error;
      EXPECT_EQ(r.width, 1024);
      const bool nok = r.verdict == "NOK";
      EXPECT_EQ(nok, !r.objects.empty()) << path << ": objects and verdict must agree";
      for (const auto& o : r.objects) {
        EXPECT_EQ(o.qc, "NOK");
        EXPECT_GE(o.box.x_min, 0);
        EXPECT_LE(o.box.x_max, r.width);
        EXPECT_LT(o.box.x_min, o.box.x_max);
        EXPECT_LT(o.box.y_min, o.box.y_max);
      }
      if (defective && nok) {
        // The first (strongest) box must touch the ground-truth defect.
        auto mask = cv::imread((root / "ground_truth/defective" / (path.stem().string() + "_mask.png")).string(),
                               cv::IMREAD_GRAYSCALE);
        ASSERT_FALSE(mask.empty());
        const auto& b = r.objects[0].box;
        cv::Rect box(b.x_min, b.y_min, b.x_max - b.x_min, b.y_max - b.y_min);
        localised += cv::countNonZero(mask(box & cv::Rect(0, 0, mask.cols, mask.rows))) > 0;
      }
      if (defective) nok ? ++tp : ++fn;
      else nok ? ++fp : ++tn;
    }
  }
  const double accuracy = double(tp + tn) / (tp + tn + fp + fn);
  const double recall = double(tp) / (tp + fn), specificity = double(tn) / (tn + fp);
  std::printf("toothbrush: tp %d fn %d tn %d fp %d accuracy %.3f recall %.3f specificity %.3f localised %d/%d\n",
              tp, fn, tn, fp, accuracy, recall, specificity, localised, tp);
  EXPECT_EQ(tp + fn, 30);
  EXPECT_EQ(tn + fp, 12);
  EXPECT_GE(accuracy, 0.95);
  EXPECT_GE(specificity, 0.90);
  EXPECT_GE(recall, 0.95);
  EXPECT_GE(localised, tp * 8 / 10) << "most detected defects must be boxed where the mask is";
}

TEST(PatchEngine, FewReferencesCalibrateWithLeaveOneOutAndJitter) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  const auto root = testing::Datasets() / "mvtec-toothbrush/train/good";
  auto engine = PatchEngine::Create(Options(), {root / "000.png", root / "001.png", root / "002.png"});
  ASSERT_TRUE(engine.ok()) << engine.status().message();
  const auto& bank = (*engine)->bank();
  EXPECT_EQ(bank.loo_scores.size(), 3u);
  EXPECT_EQ(bank.jitter_scores.size(), 9u) << "three jittered copies of each reference";
  EXPECT_DOUBLE_EQ((*engine)->threshold(), CalibrateFewShot(bank.loo_scores, bank.jitter_scores, 3, 2.0));
}

TEST(PatchEngine, OneReferenceStillCalibratesAndFindsADefect) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  const auto root = testing::Datasets() / "mvtec-toothbrush";
  auto engine = PatchEngine::Create(Options(), {root / "train/good/000.png"});
  ASSERT_TRUE(engine.ok()) << engine.status().message();
  EXPECT_EQ((*engine)->bank().loo_scores.size(), 3u) << "three jittered copies score the single reference";
  EXPECT_GT((*engine)->threshold(), 0);
  auto defect = (*engine)->Inspect(*LoadImage(root / "test/defective/000.png")).result;
  auto same = (*engine)->Inspect(*LoadImage(root / "train/good/000.png")).result;
  EXPECT_GT(defect.score, same.score);
  EXPECT_EQ(same.verdict, "OK") << "the reference itself is a good part";
}

TEST(PatchEngine, ALetterboxedOneShotReferenceCalibratesLikeTheFullFrame) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  const auto root = testing::Datasets() / "mvtec-toothbrush";
  auto dir = testing::TempDir();
  cv::Mat img = cv::imread((root / "train/good/000.png").string());
  cv::Mat boxed;  // black bands above and below, as a 4:3 camera frame around a square part
  cv::copyMakeBorder(img, boxed, 160, 160, 0, 0, cv::BORDER_CONSTANT, cv::Scalar::all(0));
  cv::imwrite((dir / "boxed.png").string(), boxed);
  PatchEngineOptions o = Options();
  o.cache_dir.clear();
  auto full = PatchEngine::Create(o, {root / "train/good/000.png"});
  auto letterboxed = PatchEngine::Create(o, {dir / "boxed.png"});
  ASSERT_TRUE(full.ok() && letterboxed.ok());
  // Reflected borders once turned the bands into tilted edges: the threshold rose about 3x.
  EXPECT_LT((*letterboxed)->threshold(), 1.5 * (*full)->threshold())
      << (*letterboxed)->threshold() << " vs " << (*full)->threshold();
}

}  // namespace
}  // namespace zeroqc
