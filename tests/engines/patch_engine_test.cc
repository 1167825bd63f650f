#include "engines/patch/patch_engine.h"
#include "engines/patch/threshold.h"

#include <fstream>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "image/overlay.h"
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

// A camera-size JPEG is decoded at a reduced scale, but the result speaks of its own pixels: a
// defect planted in a 6000x4000 photo is boxed where it is in that photo.
TEST(PatchEngine, ACameraSizeJpegIsDecodedSmallAndBoxedInItsOwnPixels) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  cv::Mat photo = cv::imread((testing::Datasets() / "aws-nova-samples/plasticpart_reference.jpg").string());
  ASSERT_FALSE(photo.empty());
  cv::resize(photo, photo, {6000, 4000}, 0, 0, cv::INTER_CUBIC);
  auto dir = testing::TempDir();
  ASSERT_TRUE(cv::imwrite((dir / "ref.jpg").string(), photo));
  const cv::Rect planted(3900, 1500, 420, 360);
  cv::rectangle(photo, planted, {20, 20, 20}, cv::FILLED);
  cv::circle(photo, {planted.x + 200, planted.y + 180}, 120, {40, 200, 240}, cv::FILLED);
  ASSERT_TRUE(cv::imwrite((dir / "qc.jpg").string(), photo));

  PatchEngineOptions o = Options();
  o.cache_dir.clear();
  auto engine = PatchEngine::Create(o, {dir / "ref.jpg"});
  ASSERT_TRUE(engine.ok()) << engine.status().message();
  EXPECT_EQ((*engine)->DecodeSide(), 1024);
  Image decoded;
  auto r = InspectFile(**engine, dir / "qc.jpg", {}, &decoded).result;
  ASSERT_FALSE(r.error) << *r.error;
  EXPECT_EQ(decoded.bgr.size(), cv::Size(1500, 1000)) << "decoded at 1/4";
  EXPECT_EQ(r.width, 6000);
  EXPECT_EQ(r.height, 4000);
  ASSERT_EQ(r.verdict, "NOK");
  ASSERT_FALSE(r.objects.empty());
  const auto& b = r.objects[0].box;
  const cv::Rect box(cv::Point(b.x_min, b.y_min), cv::Point(b.x_max, b.y_max));
  EXPECT_GT((box & planted).area(), planted.area() / 2) << "box " << box << " planted " << planted;
  EXPECT_LT(box.area(), planted.area() * 6) << "box " << box;
  // The overlay is drawn on the reduced image with the box scaled to it.
  cv::Mat overlay = DrawOverlay(decoded.bgr, (*engine)->Inspect(decoded).heatmap, r);
  ASSERT_EQ(overlay.size(), decoded.bgr.size());
  const cv::Vec3b edge = overlay.at<cv::Vec3b>(b.y_min / 4 + 1, (b.x_min + b.x_max) / 8);
  EXPECT_GT(edge[2], 200) << "red box edge where the box is, at the overlay's scale";
  EXPECT_LT(edge[1], 60);
}

TEST(PatchEngine, FewReferencesCalibrateWithLeaveOneOut) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  const auto root = testing::Datasets() / "mvtec-toothbrush/train/good";
  auto engine = PatchEngine::Create(Options(), {root / "000.png", root / "001.png", root / "002.png"});
  ASSERT_TRUE(engine.ok()) << engine.status().message();
  const auto& bank = (*engine)->bank();
  EXPECT_EQ(bank.loo_scores.size(), 3u);
  EXPECT_DOUBLE_EQ((*engine)->threshold(), CalibrateFewShot(bank.loo_scores, 3, 2.0));
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

// The foreground mask (--foreground): a defect on the part is still found and boxed where it is;
// a change of the background alone scores lower than without the mask; the bank keeps its
// foreground direction through the cache, under another key than the bank without the mask.
TEST(PatchEngine, AForegroundMaskKeepsDefectsOnThePartAndSurvivesTheCache) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  const auto root = testing::Datasets() / "mvtec-toothbrush";
  const std::vector<std::filesystem::path> refs = {root / "train/good/000.png", root / "train/good/010.png", root / "train/good/020.png",
                                                   root / "train/good/030.png"};
  PatchEngineOptions o = Options();
  o.cache_dir = testing::TempDir() / "cache";
  o.foreground_mask = true;
  auto masked = PatchEngine::Create(o, refs);
  ASSERT_TRUE(masked.ok()) << masked.status().message();
  EXPECT_FALSE((*masked)->loaded_from_cache());
  EXPECT_EQ((*masked)->Calibration()["foreground_mask"], true);
  EXPECT_EQ((*masked)->bank().foreground.rows, 2);

  auto defect = (*masked)->Inspect(*LoadImage(root / "test/defective/000.png")).result;
  ASSERT_EQ(defect.verdict, "NOK");
  const cv::Mat truth = cv::imread((root / "ground_truth/defective/000_mask.png").string(), cv::IMREAD_GRAYSCALE);
  ASSERT_FALSE(truth.empty());
  bool on_defect = false;
  for (const auto& obj : defect.objects)
    on_defect |= cv::countNonZero(truth(cv::Rect(obj.box.x_min, obj.box.y_min, obj.box.x_max - obj.box.x_min, obj.box.y_max - obj.box.y_min))) > 0;
  EXPECT_TRUE(on_defect) << "a box on the defect";

  // A good part whose dark background is lit brighter on the left.
  cv::Mat lit = cv::imread((root / "test/good/000.png").string());
  for (int y = 0; y < lit.rows; ++y)
    for (int x = 0; x < 150; ++x) {
      auto& p = lit.at<cv::Vec3b>(y, x);
      if (std::max({p[0], p[1], p[2]}) < 50) p = {45, 45, 45};
    }
  std::vector<uint8_t> png;
  cv::imencode(".png", lit, png);
  auto lit_image = DecodeImage(png);
  ASSERT_TRUE(lit_image.ok());
  PatchEngineOptions plain_options = o;
  plain_options.foreground_mask = false;
  auto plain = PatchEngine::Create(plain_options, refs);
  ASSERT_TRUE(plain.ok());
  EXPECT_NE((*plain)->cache_file(), (*masked)->cache_file()) << "the mask is part of the bank's key";
  EXPECT_EQ((*plain)->Calibration()["foreground_mask"], false);
  EXPECT_LT((*masked)->Inspect(*lit_image).result.score, (*plain)->Inspect(*lit_image).result.score);

  auto cached = PatchEngine::Create(o, refs);
  ASSERT_TRUE(cached.ok());
  EXPECT_TRUE((*cached)->loaded_from_cache());
  EXPECT_EQ((*cached)->Calibration()["foreground_mask"], true);
  EXPECT_DOUBLE_EQ((*cached)->Inspect(*LoadImage(root / "test/defective/000.png")).result.score, defect.score);
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

namespace zeroqc {
namespace {

// Issue 11: a false alarm added as a reference is no alarm any more, the bank grows by one
// reference (within its row budget) and the threshold is recalibrated with one more
// leave-one-out score; the engine it came from is left as it was.
TEST(PatchEngine, WithReferenceLearnsAFalseAlarmIncrementally) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  const auto root = testing::Datasets() / "mvtec-toothbrush";
  PatchEngineOptions o = Options();
  o.max_bank_rows = 3000;  // small, so that the coreset must be re-chosen
  auto engine = PatchEngine::Create(o, {root / "train/good/000.png", root / "train/good/001.png"});
  ASSERT_TRUE(engine.ok()) << engine.status().message();
  const auto part = root / "test/good/005.png";
  const auto before = InspectFile(**engine, part, {});
  const size_t loo = (*engine)->bank().loo_scores.size();
  const int rows = (*engine)->bank().rows.rows;

  auto grown = (*engine)->WithReference(part);
  ASSERT_TRUE(grown.ok()) << grown.status().message();
  auto* g = dynamic_cast<PatchEngine*>(grown->get());
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->bank().ranges.size(), 3u);
  EXPECT_LE(g->bank().rows.rows, 3000);
  EXPECT_EQ(g->bank().loo_scores.size(), loo + 1);
  const auto after = InspectFile(*g, part, {});
  EXPECT_EQ(after.result.verdict, "OK");
  EXPECT_LT(after.result.score, 0.5 * before.result.score) << "it is now (nearly) in the bank";
  EXPECT_NE(g->threshold(), (*engine)->threshold()) << "recalibrated";
  // The source engine is untouched.
  EXPECT_EQ((*engine)->bank().rows.rows, rows);
  EXPECT_EQ(InspectFile(**engine, part, {}).result.score, before.result.score);
  // A defect is still found by the grown engine.
  EXPECT_EQ(InspectFile(*g, root / "test/defective/000.png", {}).result.verdict, "NOK");
}

// The line window: the first parts are judged by the references alone; once the window holds
// kMinBatch - 1 parts each new part is judged by them and the reference, against a threshold from
// their scores; the window keeps the newest parts, and a photo inspected twice is one part.
TEST(PatchEngine, ALineWindowJudgesEachPartByTheLinesRecentParts) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  const auto root = testing::Datasets() / "mvtec-toothbrush";
  PatchEngineOptions o = Options();
  for (int w : {-1, 3}) {
    o.line_window = w;
    auto bad = PatchEngine::Create(o, {root / "train/good/000.png"});
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  }
  o.line_window = 8;
  o.threshold = 1.0;
  EXPECT_FALSE(PatchEngine::Create(o, {root / "train/good/000.png"}).ok()) << "a fixed threshold would not move with the line";
  o.threshold.reset();
  auto engine = PatchEngine::Create(o, {root / "train/good/000.png"});
  ASSERT_TRUE(engine.ok()) << engine.status().message();
  char name[32];
  for (int i = 1; i <= 9; ++i) {
    std::snprintf(name, sizeof name, "train/good/%03d.png", i);
    const auto r = InspectFile(**engine, root / name, {});
    ASSERT_FALSE(r.result.error) << *r.result.error;
    if (i < 8) {
      EXPECT_TRUE(r.peer_scores.empty()) << "warming up: part " << i;
      EXPECT_EQ(r.result.threshold, (*engine)->threshold());
    } else {
      EXPECT_EQ(r.peer_scores.size(), size_t(i - 1)) << "part " << i;
      EXPECT_NE(r.result.threshold, (*engine)->threshold()) << "from the line's scores";
      EXPECT_NE(r.result.text.find("recent parts"), std::string::npos) << r.result.text;
    }
  }
  const auto defect = InspectFile(**engine, root / "test/defective/000.png", {});
  EXPECT_EQ(defect.peer_scores.size(), 8u) << "the window keeps 8 parts";
  EXPECT_EQ(defect.result.verdict, "NOK") << defect.result.score << " vs " << defect.result.threshold;
  ASSERT_FALSE(defect.result.objects.empty());
  EXPECT_NE(defect.result.objects[0].reason.find("recent parts"), std::string::npos);
  EXPECT_EQ((*engine)->Calibration()["line"]["parts"], 8);
  // Inspected again, it is not its own peer: the same verdict, no near-zero score.
  const auto again = InspectFile(**engine, root / "test/defective/000.png", {});
  EXPECT_EQ(again.result.verdict, "NOK");
  EXPECT_GT(again.result.score, 0.5 * defect.result.score);
  EXPECT_EQ(again.peer_scores.size(), 7u) << "the window's 7 other parts";
  // A part judged aside (a setup check) is judged by the references alone and joins no window.
  auto img = LoadImage(root / "test/good/002.png", {});
  ASSERT_TRUE(img.ok());
  const auto aside = (*engine)->InspectAside(*img);
  EXPECT_TRUE(aside.peer_scores.empty());
  EXPECT_EQ(aside.result.threshold, (*engine)->threshold());
  EXPECT_EQ(aside.result.calibration, "references");
  // Had it joined, the same photo inspected now would find itself in the window (7 other parts).
  const auto next = InspectFile(**engine, root / "test/good/002.png", {});
  EXPECT_EQ(next.peer_scores.size(), 8u) << "the aside part is not in the window";
  // An engine grown by a reference goes on with the same line.
  auto grown = (*engine)->WithReference(root / "train/good/020.png");
  ASSERT_TRUE(grown.ok());
  EXPECT_EQ(InspectFile(**grown, root / "test/good/001.png", {}).peer_scores.size(), 8u);
}

}  // namespace
}  // namespace zeroqc

#include "engines/defect_names.h"

namespace zeroqc {
namespace {

// Names by example: the gate is the plain cosine to the closest name; the choice among names is
// made after centring, so a direction every defect shares does not decide it.
TEST(DefectNames, GatesOnSimilarityAndChoosesAfterCentring) {
  DefectNames names;
  EXPECT_FALSE(names.Nearest({1, 0, 0}).has_value()) << "no names yet";
  // Both examples share a large common part (x) and differ a little (y against z).
  names.Add("scratch", {0.9f, 0.3f, 0.0f}, 1);
  names.Add("dent", {0.9f, 0.0f, 0.3f}, 2);
  names.Add("dent", {0.9f, 0.0f, 0.3f}, 3);
  names.Add("other backbone", {1.0f, 0.0f}, 4);  // another length: ignored
  EXPECT_EQ(names.size(), 2u);
  // Closer to "dent" in what differs, although plain cosine ranks the two almost alike.
  auto m = names.Nearest({0.9f, 0.05f, 0.12f});
  ASSERT_TRUE(m);
  EXPECT_EQ(m->name, "dent");
  EXPECT_EQ(m->examples, (std::vector<int64_t>{2, 3}));
  EXPECT_GT(m->similarity, 0.9);
  // Unlike any named example: no name, whatever the centring would pick.
  EXPECT_FALSE(names.Nearest({0.0f, -1.0f, -1.0f}, 0.5).has_value());
  EXPECT_FALSE(names.Nearest({1.0f, 0.0f}, -1).has_value()) << "another length is not comparable";
}

}  // namespace
}  // namespace zeroqc

namespace zeroqc {
namespace {

// A part that lies turned: with rotated references (reference_rotations 4) its own look at 90
// degrees is in the bank, so it matches; without, the turned brush is one big anomaly. The two
// banks have their own cache keys.
TEST(PatchEngine, RotatedReferencesMatchATurnedPart) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  const auto root = testing::Datasets() / "mvtec-toothbrush";
  cv::Mat turned;
  cv::rotate(cv::imread((root / "train/good/001.png").string()), turned, cv::ROTATE_90_CLOCKWISE);
  const auto qc = testing::TempDir() / "turned.png";
  cv::imwrite(qc.string(), turned);
  auto image = LoadImage(qc, {});
  ASSERT_TRUE(image.ok());
  PatchEngineOptions o = Options();
  auto upright = PatchEngine::Create(o, {root / "train/good/000.png"});
  ASSERT_TRUE(upright.ok()) << upright.status().message();
  o.reference_rotations = 4;
  auto rotated = PatchEngine::Create(o, {root / "train/good/000.png"});
  ASSERT_TRUE(rotated.ok()) << rotated.status().message();
  EXPECT_NE((*upright)->cache_file(), (*rotated)->cache_file());
  EXPECT_GT((*rotated)->bank().rows.rows, (*upright)->bank().rows.rows) << "the turned copies' patches are in the bank";
  const auto a = (*upright)->Inspect(*image).result, b = (*rotated)->Inspect(*image).result;
  EXPECT_EQ(a.verdict, "NOK") << a.text;
  EXPECT_LT(b.score, 0.6 * a.score) << a.text << " / " << b.text;
}

}  // namespace
}  // namespace zeroqc
