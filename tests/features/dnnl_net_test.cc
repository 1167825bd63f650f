// The oneDNN runtime against OpenCV DNN on the same converted backbone and real images: the same
// features within a stated tolerance, and a graph it cannot run falls back with a warning.
#include "features/backbone.h"

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "core/warn.h"
#include "test_support.h"

namespace zeroqc {
namespace {

StatusOr<std::unique_ptr<Backbone>> OpenWith(const std::string& runtime) {
  auto spec = BackboneSpec::Load(testing::BackboneSpecPath());
  if (!spec.ok()) return spec.status();
  spec->runtime = runtime;
  return Backbone::Open(*spec);
}

// Tolerance: float32 convolutions summed in another order differ in the last bits, and the
// differences grow through 10 inception blocks; 1e-4 of each layer's largest activation is far
// below anything the anomaly scores can see (they are distances of L2-normalised descriptors).
TEST(DnnlNet, FeaturesMatchOpenCvDnnOnRealImages) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  auto dnnl = OpenWith("onednn");
  ASSERT_TRUE(dnnl.ok()) << dnnl.status().message();
  auto cv = OpenWith("opencv");
  ASSERT_TRUE(cv.ok()) << cv.status().message();
  EXPECT_EQ((*cv)->runtime(), "opencv");
  EXPECT_EQ((*dnnl)->runtime().rfind("onednn", 0), 0u) << (*dnnl)->runtime();
  EXPECT_NE((*dnnl)->fingerprint(), (*cv)->fingerprint()) << "caches are kept apart";
  for (const auto& path : {testing::Datasets() / "mvtec-toothbrush/test/defective/000.png",
                           testing::Datasets() / "aws-nova-samples/cubesponge_nok.jpg",
                           testing::Datasets() / "mpdd-metal_plate/test/good/000.jpg"}) {
    cv::Mat img = cv::imread(path.string());
    if (img.empty()) continue;
    auto a = (*dnnl)->Extract(img);
    auto b = (*cv)->Extract(img);
    ASSERT_TRUE(a.ok() && b.ok()) << path;
    ASSERT_EQ(a->size(), b->size());
    for (size_t l = 0; l < a->size(); ++l) {
      const auto& x = (*a)[l];
      const auto& y = (*b)[l];
      ASSERT_EQ(x.channels, y.channels);
      ASSERT_EQ(x.height, y.height);
      ASSERT_EQ(x.width, y.width);
      double peak = 0;
      cv::minMaxLoc(cv::abs(y.data), nullptr, &peak);
      const double diff = cv::norm(x.data, y.data, cv::NORM_INF);
      std::printf("%s layer %zu (%dx%dx%d): max |oneDNN - OpenCV| %.3g, largest activation %.3g\n",
                  path.filename().c_str(), l, x.channels, x.height, x.width, diff, peak);
      EXPECT_LE(diff, 1e-4 * peak) << path << " layer " << l;
    }
  }
}

TEST(DnnlNet, AGraphItCannotRunFallsBackToOpenCvWithAWarning) {
  REQUIRE_BACKBONE();
  const auto full = testing::BinaryDir() / "models" / "inception_v3_full.onnx";
  if (!std::filesystem::exists(full)) GTEST_SKIP() << "needs build/models/inception_v3_full.onnx (./setup.sh)";
  BackboneSpec spec;  // the whole classifier: global pooling, dense layers, softmax
  spec.name = "inception_v3_full";
  spec.model = full;
  spec.input_width = spec.input_height = 299;
  spec.layers = {"dense_3"};
  std::vector<std::string> warnings;
  SetWarningSink([&](const std::string& event, const std::string& m) { warnings.push_back(event + ": " + m); });
  auto b = Backbone::Open(spec);
  SetWarningSink([](const std::string&, const std::string& m) { std::fprintf(stderr, "zeroqc: %s\n", m.c_str()); });
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_EQ((*b)->runtime(), "opencv");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("backbone_fallback: backbone inception_v3_full: oneDNN cannot run it"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("using OpenCV DNN"), std::string::npos) << warnings[0];

  spec.runtime = "onednn";  // asked for by name: an error, not a silent fallback
  auto forced = Backbone::Open(spec);
  ASSERT_FALSE(forced.ok());
  EXPECT_EQ(forced.status().code(), Code::kUnsupported);
}

}  // namespace
}  // namespace zeroqc
