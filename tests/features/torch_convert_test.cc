#include "features/torch_convert.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <gtest/gtest.h>
#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "features/dnnl_net.h"
#include "test_support.h"

namespace zeroqc {
namespace {

std::filesystem::path Checkpoint(int v) {
  return testing::SourceDir() / ".deps" / "efficientnet" / ("efficientnet-lite" + std::to_string(v) + ".pth");
}

// The ImageNet input of the Lite family: RGB, resized, (x - 127) / 128.
cv::Mat Blob(const std::filesystem::path& image, int size) {
  cv::Mat bgr = cv::imread(image.string(), cv::IMREAD_COLOR), rgb;
  cv::resize(bgr, rgb, {size, size}, 0, 0, cv::INTER_AREA);
  cv::cvtColor(rgb, rgb, cv::COLOR_BGR2RGB);
  return cv::dnn::blobFromImage(rgb, 1.0 / 128, {}, cv::Scalar(127, 127, 127));
}

std::vector<std::filesystem::path> Images(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Each image's five highest ImageNet classes, best first.
std::vector<std::vector<int>> TopFive(cv::dnn::Net& net, const std::vector<std::filesystem::path>& images, int size) {
  std::vector<std::vector<int>> out;
  for (const auto& p : images) {
    net.setInput(Blob(p, size));
    cv::Mat logits = net.forward().reshape(1, 1);
    std::vector<int> order(1000);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + 5, order.end(),
                      [&](int a, int b) { return logits.at<float>(a) > logits.at<float>(b); });
    out.emplace_back(order.begin(), order.begin() + 5);
  }
  return out;
}

int Hits(const std::vector<std::vector<int>>& tops, const std::vector<int>& classes) {
  int hits = 0;
  for (const auto& t : tops)
    hits += std::any_of(t.begin(), t.end(), [&](int c) { return std::count(classes.begin(), classes.end(), c) > 0; });
  return hits;
}

std::vector<std::filesystem::path> First12(const std::string& set) {
  auto all = Images(testing::Datasets() / set / "test" / "good");
  all.resize(12);
  return all;
}

// The whole network, classifier included, must see what ImageNet says is there, and agree with the
// PyTorch reference (lukemelas' EfficientNet-PyTorch with these weights, run once by hand on the
// same pixels: OpenCV's INTER_AREA resize, (x - 127) / 128). A wrong padding, BatchNorm fold or
// channel order changes these answers at once.
//
// MVTec's toothbrushes are photographed head-on from above, bristle tufts filling the frame: the
// reference itself never ranks ImageNet's "toothbrush" (859) in its top 5 (it sees "corn", 987), so
// for them the test pins the reference's answer rather than the class name.
TEST(TorchConvert, EfficientNetLiteClassifiesAsImageNetAndThePyTorchReferenceDo) {
  REQUIRE_DATASETS();
  // Reference top-1 classes of test/good 000-011.
  const std::map<int, std::map<std::string, std::vector<int>>> reference = {
      {0,
       {{"mvtec-toothbrush", {987, 987, 987, 987, 987, 987, 987, 987, 987, 987, 987, 987}},
        {"visa-capsules", {783, 783, 783, 584, 584, 584, 584, 783, 464, 584, 783, 783}},
        {"kolektorsdd", {805, 805, 805, 805, 805, 805, 805, 805, 805, 330, 330, 805}}}},
      {2,
       {{"mvtec-toothbrush", {987, 572, 116, 572, 987, 987, 572, 987, 987, 987, 987, 987}},
        {"mvtec3d-tire", {761, 761, 761, 761, 761, 761, 761, 761, 761, 761, 761, 761}},
        {"visa-capsules", {584, 584, 584, 584, 584, 584, 584, 584, 584, 584, 584, 584}}}}};
  for (int v : {0, 2}) {
    if (!std::filesystem::exists(Checkpoint(v))) GTEST_SKIP() << Checkpoint(v) << " missing: run ./setup.sh";
    TorchConvertOptions opt;
    opt.arch = "efficientnet-lite" + std::to_string(v);
    const int size = v == 0 ? 224 : 260;
    auto onnx = testing::TempDir() / (opt.arch + ".onnx");
    Status st = ConvertTorchToOnnx(Checkpoint(v), opt, onnx);
    ASSERT_TRUE(st.ok()) << st.message();
    auto net = cv::dnn::readNetFromONNX(onnx.string());
    // What ImageNet names: bottles (pill bottle, perfume, water, pop, wine, beer bottle, whiskey jug)
    // and baked dough (French loaf, bagel, pretzel, dough, potpie).
    auto bottles = TopFive(net, First12("mvtec-loco-juice_bottle"), size);
    EXPECT_GE(Hits(bottles, {720, 711, 898, 737, 907, 440, 901}), 11) << opt.arch;
    auto cookies = TopFive(net, First12("lfv-cookies"), size);
    EXPECT_GE(Hits(cookies, {930, 931, 932, 961, 964}), 11) << opt.arch;
    for (const auto& [set, top1] : reference.at(v)) {
      auto tops = TopFive(net, First12(set), size);
      int same = 0;
      for (size_t i = 0; i < top1.size(); ++i) same += tops[i][0] == top1[i];
      EXPECT_GE(same, 11) << opt.arch << " on " << set << ": top-1 agrees with PyTorch on " << same << " of 12";
    }
  }
}

// oneDNN runs the Lite graph itself (grouped convolutions, ReLU6 fused) and gives OpenCV DNN's features.
TEST(TorchConvert, OneDnnRunsTheLiteFeaturesAsOpenCvDoes) {
  REQUIRE_DATASETS();
  if (!std::filesystem::exists(Checkpoint(0))) GTEST_SKIP() << Checkpoint(0) << " missing: run ./setup.sh";
  TorchConvertOptions opt;
  opt.arch = "efficientnet-lite0";
  opt.input_height = opt.input_width = 250;  // odd sizes on the way: asymmetric "same" pads
  opt.outputs = {"stage3", "block11_expand", "stage5"};
  auto onnx = testing::TempDir() / "lite0_features.onnx";
  ASSERT_TRUE(ConvertTorchToOnnx(Checkpoint(0), opt, onnx).ok());
  auto dnnl = DnnlNet::Load(onnx, 250, 250, opt.outputs);
  ASSERT_TRUE(dnnl.ok()) << dnnl.status().message();
  auto net = cv::dnn::readNetFromONNX(onnx.string());
  cv::Mat blob = Blob(testing::Datasets() / "mvtec-toothbrush" / "test" / "good" / "000.png", 250);
  auto ours = (*dnnl)->Run(blob);
  ASSERT_TRUE(ours.ok()) << ours.status().message();
  net.setInput(blob);
  std::vector<cv::Mat> theirs;
  net.forward(theirs, std::vector<cv::String>(opt.outputs.begin(), opt.outputs.end()));
  ASSERT_EQ(ours->size(), 3u);
  const int channels[] = {40, 672, 112}, side[] = {32, 16, 16};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*ours)[i].channels, channels[i]);
    EXPECT_EQ((*ours)[i].height, side[i]);
    cv::Mat ref = theirs[i].reshape(1, theirs[i].size[1]);
    const double scale = cv::norm(ref, cv::NORM_INF);
    EXPECT_LT(cv::norm((*ours)[i].data, ref, cv::NORM_INF), 1e-3 * scale) << opt.outputs[i];
  }
}

// torchvision's ResNet-50 with weights from a formula instead of training, in torchvision's own
// order: the same formula in PyTorch gave the values below (torchvision 0.19.1, run once by hand).
// Element i of the t-th tensor (num_batches_tracked not counted) is sin(1.3 i + 0.7 t), scaled:
// BatchNorm weight 1 + 0.1 s, bias 0.1 s, mean 0.05 s, variance 1 + 0.5 |s|; convolutions and the
// classifier s * 2 / sqrt(fan in); the classifier's bias 0.1 s.
StateDict FormulaResNet50(const std::string& prefix) {
  StateDict w;
  int t = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, char kind) {
    TorchTensor x;
    x.shape = shape;
    x.data.resize(size_t(x.numel()));
    const double fan_in = double(x.numel()) / double(shape[0]);
    for (size_t i = 0; i < x.data.size(); ++i) {
      const double v = std::sin(1.3 * double(i) + 0.7 * t);
      x.data[i] = float(kind == 'v' ? 1 + 0.5 * std::abs(v) : kind == 'm' ? 0.05 * v : kind == 'b' ? 0.1 * v
                        : kind == 'g' ? 1 + 0.1 * v : v * 2.0 / std::sqrt(fan_in));
    }
    w[prefix + name] = std::move(x);
    ++t;
  };
  auto conv_bn = [&](const std::string& conv, const std::string& bn, int64_t out, int64_t in, int64_t k) {
    add(conv + ".weight", {out, in, k, k}, 'w');
    add(bn + ".weight", {out}, 'g');
    add(bn + ".bias", {out}, 'b');
    add(bn + ".running_mean", {out}, 'm');
    add(bn + ".running_var", {out}, 'v');
  };
  conv_bn("conv1", "bn1", 64, 3, 7);
  int64_t in = 64;
  const int depth[] = {3, 4, 6, 3};
  for (int l = 1; l <= 4; ++l) {
    const int64_t width = 64 << (l - 1);
    for (int i = 0; i < depth[l - 1]; ++i) {
      const std::string pre = "layer" + std::to_string(l) + "." + std::to_string(i);
      conv_bn(pre + ".conv1", pre + ".bn1", width, in, 1);
      conv_bn(pre + ".conv2", pre + ".bn2", width, width, 3);
      conv_bn(pre + ".conv3", pre + ".bn3", width * 4, width, 1);
      if (i == 0) conv_bn(pre + ".downsample.0", pre + ".downsample.1", width * 4, in, 1);
      in = width * 4;
    }
  }
  add("fc.weight", {1000, 2048}, 'w');
  add("fc.bias", {1000}, 'b');
  EXPECT_EQ(t, 267);  // as many as torchvision's state dict holds
  return w;
}

// A 96 x 80 input (rows and columns differ, so a swap shows): sin(0.1 x + 0.2 y + channel).
cv::Mat FormulaInput() {
  const int size[] = {1, 3, 96, 80};
  cv::Mat blob(4, size, CV_32F);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 96; ++y)
      for (int x = 0; x < 80; ++x) blob.ptr<float>(0, c, y)[x] = float(std::sin(0.1 * x + 0.2 * y + c));
  return blob;
}

// PyTorch's conventions (symmetric padding, the stride on the 3x3, the shortcut's projection,
// epsilon 1e-5, the max pool) all show in these sums: a wrong one moves them by far more than 1e-4.
TEST(TorchConvert, ResNetMatchesTorchvisionAndOneDnnRunsIt) {
  // Kept inside a larger model's state dict, as resmem keeps its ResNet-152: the prefix selects it.
  StateDict w = FormulaResNet50("features.");
  w["head.weight"] = TorchTensor{{1, 4}, {1, 2, 3, 4}};  // outside the prefix: ignored
  TorchConvertOptions opt;
  opt.arch = "resnet50";
  opt.prefix = "features.";
  opt.input_height = 96;
  opt.input_width = 80;
  opt.outputs = {"layer2", "layer3", "logits"};
  auto onnx = testing::TempDir() / "resnet50_formula.onnx";
  Status st = ConvertStateDictToOnnx(w, opt, onnx);
  ASSERT_TRUE(st.ok()) << st.message();
  auto net = cv::dnn::readNetFromONNX(onnx.string());
  net.setInput(FormulaInput());
  std::vector<cv::Mat> out;
  net.forward(out, std::vector<cv::String>{"layer2", "layer3", "logits"});
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].size[1], 512);
  EXPECT_EQ(out[0].size[2], 12);
  EXPECT_EQ(out[0].size[3], 10);
  EXPECT_EQ(out[1].size[1], 1024);
  EXPECT_EQ(out[1].size[2], 6);
  EXPECT_EQ(out[1].size[3], 5);
  auto sums = [](const cv::Mat& m) {
    cv::Mat flat = m.reshape(1, 1);
    return std::pair{cv::sum(flat)[0], flat.dot(flat)};
  };
  auto [s2, q2] = sums(out[0]);
  auto [s3, q3] = sums(out[1]);
  EXPECT_NEAR(s2, 34998.038, 1e-4 * 34998.0);
  EXPECT_NEAR(q2, 55121.134, 1e-4 * 55121.0);
  EXPECT_NEAR(s3, 39026.888, 1e-4 * 39026.0);
  EXPECT_NEAR(q3, 126608.53, 1e-4 * 126608.0);
  const float logits[] = {-0.58072f, 1.89856f, 0.14089f, -1.90462f, 0.31192f};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(out[2].at<float>(0, i), logits[i], 1e-3) << "logit " << i;
  cv::Point best;
  cv::minMaxLoc(out[2].reshape(1, 1), nullptr, nullptr, nullptr, &best);
  EXPECT_EQ(best.x, 554);

  // oneDNN runs the feature graph (the max pool, residual sums, ReLU after them) as OpenCV does.
  opt.outputs = {"layer2", "layer3"};
  ASSERT_TRUE(ConvertStateDictToOnnx(w, opt, onnx).ok());
  auto dnnl = DnnlNet::Load(onnx, 96, 80, opt.outputs);
  ASSERT_TRUE(dnnl.ok()) << dnnl.status().message();
  auto ours = (*dnnl)->Run(FormulaInput());
  ASSERT_TRUE(ours.ok()) << ours.status().message();
  for (size_t i = 0; i < 2; ++i) {
    cv::Mat ref = out[i].reshape(1, out[i].size[1]);
    EXPECT_LT(cv::norm((*ours)[i].data, ref, cv::NORM_INF), 1e-4 * cv::norm(ref, cv::NORM_INF)) << opt.outputs[i];
  }
}

TEST(TorchConvert, AResNetCheckpointThatIsNotOneIsNamed) {
  TorchConvertOptions opt;
  opt.arch = "resnet50";
  opt.prefix = "features.";
  opt.input_height = opt.input_width = 64;
  auto onnx = testing::TempDir() / "resnet_bad.onnx";
  StateDict w = FormulaResNet50("features.");
  // Without the prefix, the network is not there.
  TorchConvertOptions bare = opt;
  bare.prefix.clear();
  Status st = ConvertStateDictToOnnx(w, bare, onnx);
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_NE(st.message().find("no tensor conv1.weight"), std::string::npos) << st.message();
  // A ResNet-101's layer3 is longer: ResNet-50's weights are not one.
  opt.arch = "resnet101";
  st = ConvertStateDictToOnnx(w, opt, onnx);
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_NE(st.message().find("features.layer3.6.conv1.weight"), std::string::npos) << st.message();
  // A tensor of the wrong shape is named with both shapes.
  opt.arch = "resnet50";
  w["features.layer2.1.conv2.weight"].shape = {128, 128, 1, 9};
  st = ConvertStateDictToOnnx(w, opt, onnx);
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_NE(st.message().find("features.layer2.1.conv2.weight is [128, 128, 1, 9], expected [128, 128, 3, 3]"),
            std::string::npos) << st.message();
  // A tensor the architecture does not have, within the prefix, means another network.
  w = FormulaResNet50("features.");
  w["features.layer4.3.conv1.weight"] = TorchTensor{{1}, {0}};
  st = ConvertStateDictToOnnx(w, opt, onnx);
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_NE(st.message().find("does not use, e.g. features.layer4.3.conv1.weight"), std::string::npos) << st.message();
  // Unknown outputs and sizes are refused before anything is read.
  opt.outputs = {"layer5"};
  st = ConvertStateDictToOnnx(w, opt, onnx);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("stem, layer1-layer4 or logits"), std::string::npos) << st.message();
  opt.outputs = {"layer2"};
  opt.input_height = 16;
  EXPECT_EQ(ConvertStateDictToOnnx(w, opt, onnx).code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace zeroqc
