#include "features/tfjs_convert.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "test_support.h"

namespace zeroqc {
namespace {

const std::filesystem::path kTfjs = testing::SourceDir() / ".deps" / "inception_v3";

void RequireTfjs() {
  ASSERT_TRUE(std::filesystem::exists(kTfjs / "weights.bin")) << kTfjs << " missing: run ./setup.sh";
}

// The whole network, head included, must classify the product photos as nsfwjs does:
// RGB, resized to 299x299, scaled to [0,1]; class 2 of (Drawing, Hentai, Neutral, Porn, Sexy).
TEST(TfjsConvert, FullInceptionV3ClassifiesProductPhotosAsNeutral) {
  REQUIRE_DATASETS();
  RequireTfjs();
  auto onnx = testing::TempDir() / "full.onnx";
  TfjsConvertOptions opt;  // the model's own output: dense_3 (softmax)
  Status st = ConvertTfjsToOnnx(kTfjs / "model.json", kTfjs / "weights.bin", opt, onnx);
  ASSERT_TRUE(st.ok()) << st.message();
  auto net = cv::dnn::readNetFromONNX(onnx.string());
  int high = 0, photos = 0;
  for (const auto& e : std::filesystem::directory_iterator(testing::Datasets() / "aws-nova-samples")) {
    if (e.path().extension() != ".jpg") continue;
    cv::Mat bgr = cv::imread(e.path().string(), cv::IMREAD_COLOR), rgb, resized;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    cv::resize(rgb, resized, {299, 299}, 0, 0, cv::INTER_LINEAR);
    net.setInput(cv::dnn::blobFromImage(resized, 1.0 / 255));
    cv::Mat p = net.forward().reshape(1, 1);
    ASSERT_EQ(p.cols, 5);
    EXPECT_NEAR(cv::sum(p)[0], 1.0, 1e-4);
    const float neutral = p.at<float>(2);
    ++photos;
    if (e.path().filename() == "metalpiece_reference.jpg") {
      EXPECT_NEAR(neutral, 0.47, 0.05) << "the one ambiguous photo";
    } else {
      EXPECT_GE(neutral, 0.98) << e.path().filename();
      high += neutral >= 0.98;
    }
  }
  EXPECT_EQ(photos, 13);
  EXPECT_EQ(high, 12);
}

TEST(TfjsConvert, ExposesIntermediateBlocksAsFeatures) {
  RequireTfjs();
  auto onnx = testing::TempDir() / "features.onnx";
  TfjsConvertOptions opt;
  opt.outputs = {"mixed2", "mixed7"};
  ASSERT_TRUE(ConvertTfjsToOnnx(kTfjs / "model.json", kTfjs / "weights.bin", opt, onnx).ok());
  auto net = cv::dnn::readNetFromONNX(onnx.string());
  net.setInput(cv::Mat(std::vector<int>{1, 3, 299, 299}, CV_32F, cv::Scalar(0.5)));
  std::vector<cv::Mat> outs;
  net.forward(outs, std::vector<cv::String>{"mixed2", "mixed7"});
  ASSERT_EQ(outs.size(), 2u);
  EXPECT_EQ(outs[0].size[1], 288);  // mixed2: stride 8
  EXPECT_EQ(outs[0].size[2], 35);
  EXPECT_EQ(outs[1].size[1], 768);  // mixed7: stride 16
  EXPECT_EQ(outs[1].size[2], 17);
  // Truncated at mixed7: the classifier head is not in the graph.
  std::ifstream in(onnx, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(bytes.find("dense_3"), std::string::npos);
}

// A tiny model written by the test, for the converter's error paths.
struct TinyModel {
  nlohmann::json topo;
  std::vector<uint8_t> weights;
  TinyModel() {
    topo = {{"modelTopology",
             {{"model_config",
               {{"class_name", "Model"},
                {"config",
                 {{"name", "tiny"},
                  {"layers",
                   {{{"name", "in"}, {"class_name", "InputLayer"}, {"config", {{"batch_input_shape", {nullptr, 8, 8, 3}}}}, {"inbound_nodes", nlohmann::json::array()}},
                    {{"name", "conv"}, {"class_name", "Conv2D"},
                     {"config", {{"filters", 2}, {"kernel_size", {1, 1}}, {"strides", {1, 1}}, {"padding", "same"}, {"activation", "relu"}, {"use_bias", false}}},
                     {"inbound_nodes", {{{"in", 0, 0, nlohmann::json::object()}}}}}}},
                  {"input_layers", {{"in", 0, 0}}},
                  {"output_layers", {{"conv", 0, 0}}}}}}}}},
            {"weightsManifest",
             {{{"paths", {"w"}},
               {"weights", {{{"name", "conv/kernel"}, {"shape", {1, 1, 3, 2}}, {"dtype", "float32"},
                             {"quantization", {{"dtype", "uint8"}, {"min", -1.0}, {"scale", 0.01}}}}}}}}}};
    weights.assign(6, 100);  // 100 * 0.01 - 1 = 0
  }
  Status Convert(const std::filesystem::path& dir, TfjsConvertOptions opt = {}) {
    std::ofstream(dir / "model.json") << topo.dump();
    std::ofstream(dir / "weights.bin", std::ios::binary).write(reinterpret_cast<const char*>(weights.data()), weights.size());
    opt.input_height = opt.input_width = 8;
    return ConvertTfjsToOnnx(dir / "model.json", dir / "weights.bin", opt, dir / "out.onnx");
  }
};

TEST(TfjsConvert, TinyModelConvertsAndDequantises) {
  auto dir = testing::TempDir();
  TinyModel m;
  m.weights = {200, 100, 0, 100, 100, 150};  // kernel[0,0,cin,cout]: (1,0) (-1,0) (0,0.5)
  ASSERT_TRUE(m.Convert(dir).ok());
  auto net = cv::dnn::readNetFromONNX((dir / "out.onnx").string());
  cv::Mat x(std::vector<int>{1, 3, 8, 8}, CV_32F);
  float* p = x.ptr<float>();
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 64; ++i) p[c * 64 + i] = float(c + 1);  // channels 1, 2, 3
  net.setInput(x);
  cv::Mat y = net.forward();
  ASSERT_EQ(y.size[1], 2);
  EXPECT_NEAR(y.ptr<float>()[0], 0.0, 1e-5);  // relu(1 * 1 + 2 * -1 + 3 * 0)
  EXPECT_NEAR(y.ptr<float>()[64], 1 * 0.0 + 2 * 0.0 + 3 * 0.5, 1e-5);
}

// MobileNet's building blocks: a zero padding folded into the strided depthwise convolution after
// it, a batch normalisation folded into that, and ReLU6. Checked against the same arithmetic
// written out here.
TEST(TfjsConvert, DepthwiseBlockWithZeroPaddingAndRelu6) {
  auto dir = testing::TempDir();
  using nlohmann::json;
  auto from = [](const char* src) { return json{{{src, 0, 0, json::object()}}}; };
  constexpr int kC = 3, kMult = 2, kIn = 7;  // the converter feeds three colour channels
  json layers = {
      {{"name", "in"}, {"class_name", "InputLayer"}, {"config", {{"batch_input_shape", {nullptr, kIn, kIn, kC}}}}, {"inbound_nodes", json::array()}},
      {{"name", "pad"}, {"class_name", "ZeroPadding2D"}, {"config", {{"padding", {{0, 1}, {0, 1}}}}}, {"inbound_nodes", from("in")}},
      {{"name", "dw"}, {"class_name", "DepthwiseConv2D"},
       {"config", {{"kernel_size", {3, 3}}, {"strides", {2, 2}}, {"padding", "valid"}, {"depth_multiplier", kMult}, {"use_bias", false}}},
       {"inbound_nodes", from("pad")}},
      {{"name", "bn"}, {"class_name", "BatchNormalization"}, {"config", {{"epsilon", 0.001}}}, {"inbound_nodes", from("dw")}},
      {{"name", "relu6"}, {"class_name", "ReLU"}, {"config", {{"max_value", 6.0}, {"negative_slope", 0}, {"threshold", 0}}}, {"inbound_nodes", from("bn")}}};
  const int cout = kC * kMult;
  json manifest = {{{"paths", {"w"}},
                    {"weights",
                     {{{"name", "dw/depthwise_kernel"}, {"shape", {3, 3, kC, kMult}}, {"dtype", "float32"}},
                      {{"name", "bn/gamma"}, {"shape", {cout}}, {"dtype", "float32"}},
                      {{"name", "bn/beta"}, {"shape", {cout}}, {"dtype", "float32"}},
                      {{"name", "bn/moving_mean"}, {"shape", {cout}}, {"dtype", "float32"}},
                      {{"name", "bn/moving_variance"}, {"shape", {cout}}, {"dtype", "float32"}}}}}};
  cv::RNG rng(7);
  std::vector<float> kernel(9 * kC * kMult), gamma(cout), beta(cout), mean(cout), var(cout);
  for (auto& v : kernel) v = float(rng.uniform(-1.0, 1.0));
  for (int o = 0; o < cout; ++o)
    gamma[o] = float(rng.uniform(0.5, 2.0)), beta[o] = float(rng.uniform(-1.0, 3.0)), mean[o] = float(rng.uniform(-1.0, 1.0)),
    var[o] = float(rng.uniform(0.5, 2.0));
  std::ofstream(dir / "model.json") << json{{"modelTopology", {{"model_config", {{"class_name", "Model"}, {"config", {{"name", "dw"}, {"layers", layers}, {"input_layers", {{"in", 0, 0}}}, {"output_layers", {{"relu6", 0, 0}}}}}}}}},
                                            {"weightsManifest", manifest}}
                                           .dump();
  {
    std::ofstream w(dir / "weights.bin", std::ios::binary);
    for (const auto* v : {&kernel, &gamma, &beta, &mean, &var}) w.write(reinterpret_cast<const char*>(v->data()), v->size() * sizeof(float));
  }
  TfjsConvertOptions opt;
  opt.input_height = opt.input_width = kIn;
  Status converted = ConvertTfjsToOnnx(dir / "model.json", dir / "weights.bin", opt, dir / "out.onnx");
  ASSERT_TRUE(converted.ok()) << converted.message();

  auto net = cv::dnn::readNetFromONNX((dir / "out.onnx").string());
  cv::Mat x(std::vector<int>{1, kC, kIn, kIn}, CV_32F);
  rng.fill(x, cv::RNG::UNIFORM, -3.0, 3.0);
  net.setInput(x);
  cv::Mat y = net.forward();
  const int n = (kIn + 1 - 3) / 2 + 1;  // padded at the bottom and right, valid 3x3, stride 2
  ASSERT_EQ(y.size[1], cout);
  ASSERT_EQ(y.size[2], n);
  ASSERT_EQ(y.size[3], n);
  const float* in = x.ptr<float>();
  int clipped = 0;
  for (int c = 0; c < kC; ++c)
    for (int m = 0; m < kMult; ++m) {
      const int o = c * kMult + m;  // Keras orders depthwise outputs channel-major
      for (int oy = 0; oy < n; ++oy)
        for (int ox = 0; ox < n; ++ox) {
          double acc = 0;
          for (int ky = 0; ky < 3; ++ky)
            for (int kx = 0; kx < 3; ++kx) {
              const int iy = 2 * oy + ky, ix = 2 * ox + kx;
              if (iy < kIn && ix < kIn) acc += in[(c * kIn + iy) * kIn + ix] * kernel[((ky * 3 + kx) * kC + c) * kMult + m];
            }
          double v = gamma[o] * (acc - mean[o]) / std::sqrt(var[o] + 0.001) + beta[o];
          clipped += v < 0 || v > 6;
          v = std::clamp(v, 0.0, 6.0);
          EXPECT_NEAR(y.ptr<float>()[(o * n + oy) * n + ox], v, 1e-4) << "channel " << o << " at " << oy << "," << ox;
        }
    }
  EXPECT_GT(clipped, 0);  // the bounds of ReLU6 were exercised
}

TEST(TfjsConvert, RefusesWhatItCannotConvert) {
  auto dir = testing::TempDir();
  {
    TinyModel m;
    m.topo["modelTopology"]["model_config"]["config"]["layers"][1]["class_name"] = "LSTM";
    Status st = m.Convert(dir);
    EXPECT_EQ(st.code(), Code::kUnsupported);
    EXPECT_NE(st.message().find("LSTM"), std::string::npos) << st.message();
  }
  {
    TinyModel m;
    m.weights.resize(3);
    EXPECT_EQ(m.Convert(dir).code(), Code::kCorrupt);
  }
  {
    TinyModel m;
    TfjsConvertOptions opt;
    opt.outputs = {"mixed99"};
    Status st = m.Convert(dir, opt);
    EXPECT_EQ(st.code(), Code::kNotFound);
    EXPECT_NE(st.message().find("mixed99"), std::string::npos);
  }
  {
    TinyModel m;  // zero padding is folded into convolutions; before anything else it is refused
    auto& layers = m.topo["modelTopology"]["model_config"]["config"]["layers"];
    layers[1] = {{"name", "conv"}, {"class_name", "ZeroPadding2D"}, {"config", {{"padding", 1}}}, {"inbound_nodes", {{{"in", 0, 0, nlohmann::json::object()}}}}};
    layers.push_back({{"name", "pool"}, {"class_name", "MaxPooling2D"}, {"config", {{"pool_size", {2, 2}}, {"padding", "valid"}}}, {"inbound_nodes", {{{"conv", 0, 0, nlohmann::json::object()}}}}});
    m.topo["modelTopology"]["model_config"]["config"]["output_layers"] = {{"pool", 0, 0}};
    Status st = m.Convert(dir);
    EXPECT_EQ(st.code(), Code::kUnsupported);
    EXPECT_NE(st.message().find("zero padding"), std::string::npos) << st.message();
  }
  {
    std::ofstream(dir / "bad.json") << "{not json";
    Status st = ConvertTfjsToOnnx(dir / "bad.json", dir / "weights.bin", {}, dir / "x.onnx");
    EXPECT_EQ(st.code(), Code::kCorrupt);
  }
}

}  // namespace
}  // namespace zeroqc
