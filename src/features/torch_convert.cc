#include "features/torch_convert.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "features/onnx_graph.h"

namespace zeroqc {
namespace {

struct LiteParams {
  double width, depth;
  int resolution;
};
const std::map<std::string, LiteParams> kLite = {{"efficientnet-lite0", {1.0, 1.0, 224}},
                                                  {"efficientnet-lite1", {1.0, 1.1, 240}},
                                                  {"efficientnet-lite2", {1.1, 1.2, 260}},
                                                  {"efficientnet-lite3", {1.2, 1.4, 280}},
                                                  {"efficientnet-lite4", {1.4, 1.8, 300}}};

// The seven stages of EfficientNet-B0, which the Lite family scales (efficientnet_lite_builder):
// repeats, kernel, stride, expansion, input and output channels.
struct StageArgs {
  int repeats, kernel, stride, expand, in, out;
};
constexpr StageArgs kStages[] = {{1, 3, 1, 1, 32, 16},   {2, 3, 2, 6, 16, 24},   {2, 5, 2, 6, 24, 40},
                                 {3, 3, 2, 6, 40, 80},   {3, 5, 1, 6, 80, 112},  {4, 5, 2, 6, 112, 192},
                                 {1, 3, 1, 6, 192, 320}};

// EfficientNet's channel rounding: to a multiple of 8, never more than 10% down.
int RoundFilters(int filters, double width) {
  const double f = filters * width;
  int n = std::max(8, int(f + 4) / 8 * 8);
  if (n < 0.9 * f) n += 8;
  return n;
}

std::string Dims(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

enum class Act { kNone, kRelu, kRelu6 };

// How a family pads and normalises: the Lite family was trained in TensorFlow ("same" padding, the
// extra pixel at the end; BatchNorm epsilon 1e-3), torchvision's ResNets in PyTorch (k / 2 on every
// side; epsilon 1e-5).
struct Family {
  bool tf_same;
  double bn_eps;
};
constexpr Family kTensorFlowFamily{true, 1e-3}, kPyTorchFamily{false, 1e-5};

// Builds the ONNX graph from a state dict's tensors, checking each one's shape against the
// architecture. `prefix` is the part of every name before the network's own (a network kept inside
// a larger model's state dict, e.g. "features.").
class GraphBuilder {
 public:
  GraphBuilder(const StateDict& w, const std::string& arch, const std::string& prefix, Family family, int h, int wd)
      : w_(w), arch_(arch), prefix_(prefix), family_(family), g_(arch) {
    g_.Input("input", {1, 3, h, wd});
    shape_["input"] = {1, 3, h, wd};
  }

  StatusOr<const TorchTensor*> Get(const std::string& name, const Shape& expect) {
    auto it = w_.find(prefix_ + name);
    if (it == w_.end()) return Corrupt("the checkpoint is not " + arch_ + ": it has no tensor " + prefix_ + name);
    if (it->second.shape != expect)
      return Corrupt("the checkpoint is not " + arch_ + ": " + prefix_ + name + " is " + Dims(it->second.shape) +
                     ", expected " + Dims(expect));
    used_.insert(it->first);
    return &it->second;
  }

  // A bias-free convolution followed by BatchNorm (folded into it) and an activation, padded as the
  // family pads. Returns the output tensor's name.
  StatusOr<std::string> ConvBn(const std::string& in, const std::string& conv, const std::string& bn, int cout,
                               int kernel, int stride, bool depthwise, Act act, const std::string& out) {
    const Shape s = shape_.at(in);
    const int64_t cin = s[1], per = depthwise ? 1 : cin;
    if (depthwise && cout != cin) return Internal("a depthwise convolution that changes the channels");
    auto k = Get(conv + ".weight", {cout, per, kernel, kernel});
    if (!k.ok()) return k.status();
    const TorchTensor *gamma, *beta, *mean, *var;
    for (auto [name, t] : {std::pair{"weight", &gamma}, {"bias", &beta}, {"running_mean", &mean}, {"running_var", &var}}) {
      auto x = Get(bn + "." + name, {cout});
      if (!x.ok()) return x.status();
      *t = *x;
    }
    if (w_.count(prefix_ + bn + ".num_batches_tracked")) used_.insert(prefix_ + bn + ".num_batches_tracked");
    std::vector<float> weight = (*k)->data, bias(static_cast<size_t>(cout));
    const size_t each = size_t(per) * kernel * kernel;
    for (int o = 0; o < cout; ++o) {  // y = gamma * (conv - mean) / sqrt(var + eps) + beta
      const double f = gamma->data[o] / std::sqrt(double(var->data[o]) + family_.bn_eps);
      for (size_t j = 0; j < each; ++j) weight[o * each + j] = float(weight[o * each + j] * f);
      bias[o] = float(beta->data[o] - mean->data[o] * f);
    }
    auto [top, bottom] = family_.tf_same ? SamePads(s[2], kernel, stride) : std::pair<int64_t, int64_t>{kernel / 2, kernel / 2};
    auto [left, right] = family_.tf_same ? SamePads(s[3], kernel, stride) : std::pair<int64_t, int64_t>{kernel / 2, kernel / 2};
    const std::string conv_out = act != Act::kNone ? out + "_conv" : out;
    g_.Initializer(conv + "_W", {cout, per, kernel, kernel}, weight);
    g_.Initializer(conv + "_B", {cout}, bias);
    auto* n = g_.Node("Conv", {in, conv + "_W", conv + "_B"}, conv_out);
    OnnxGraph::Ints(n, "kernel_shape", {kernel, kernel});
    OnnxGraph::Ints(n, "strides", {stride, stride});
    OnnxGraph::Ints(n, "dilations", {1, 1});
    OnnxGraph::Ints(n, "pads", {top, left, bottom, right});
    if (depthwise) OnnxGraph::Int(n, "group", cin);
    if (act == Act::kRelu6) {
      auto* c = g_.Node("Clip", {conv_out}, out);
      OnnxGraph::Float(c, "min", 0.f);
      OnnxGraph::Float(c, "max", 6.f);
    } else if (act == Act::kRelu) {
      g_.Node("Relu", {conv_out}, out);
    }
    shape_[out] = {1, cout, (s[2] + top + bottom - kernel) / stride + 1, (s[3] + left + right - kernel) / stride + 1};
    return out;
  }

  // PyTorch's MaxPool2d(kernel, stride, padding), floor mode.
  std::string MaxPool(const std::string& in, int kernel, int stride, int pad, const std::string& out) {
    auto* n = g_.Node("MaxPool", {in}, out);
    OnnxGraph::Ints(n, "kernel_shape", {kernel, kernel});
    OnnxGraph::Ints(n, "strides", {stride, stride});
    OnnxGraph::Ints(n, "pads", {pad, pad, pad, pad});
    const Shape& s = shape_.at(in);
    shape_[out] = {1, s[1], (s[2] + 2 * pad - kernel) / stride + 1, (s[3] + 2 * pad - kernel) / stride + 1};
    return out;
  }

  // A residual sum, then an optional ReLU.
  std::string Add(const std::string& a, const std::string& b, bool relu, const std::string& out) {
    const std::string sum = relu ? out + "_sum" : out;
    g_.Node("Sum", {a, b}, sum);
    shape_[sum] = shape_.at(a);
    if (relu) {
      g_.Node("Relu", {sum}, out);
      shape_[out] = shape_.at(a);
    }
    return out;
  }

  // GlobalAveragePool, Flatten and the ImageNet classifier `fc` ([1000, channels] weights).
  Status Classifier(const std::string& in, const std::string& fc, const std::string& out) {
    const int64_t c = shape_.at(in)[1];
    auto fw = Get(fc + ".weight", {1000, c});
    if (!fw.ok()) return fw.status();
    auto fb = Get(fc + ".bias", {1000});
    if (!fb.ok()) return fb.status();
    g_.Node("GlobalAveragePool", {in}, in + "_pool");
    OnnxGraph::Int(g_.Node("Flatten", {in + "_pool"}, in + "_flat"), "axis", 1);
    g_.Initializer(fc + "_W", {1000, c}, (*fw)->data);  // [out, in] with transB, as OpenCV reads Gemm
    g_.Initializer(fc + "_B", {1000}, (*fb)->data);
    OnnxGraph::Int(g_.Node("Gemm", {in + "_flat", fc + "_W", fc + "_B"}, out), "transB", 1);
    shape_[out] = {1, 1000};
    // The whole network was read: any tensor left over means another architecture.
    if (auto unused = Unused(); !unused.empty())
      return Corrupt("the checkpoint is not " + arch_ + ": it has " + std::to_string(unused.size()) +
                     " tensors the architecture does not use, e.g. " + unused.front());
    return Status();
  }

  void Alias(const std::string& tensor, const std::string& name) {
    if (tensor == name) return;
    g_.Node("Identity", {tensor}, name);
    shape_[name] = shape_.at(tensor);
  }
  const Shape& ShapeOf(const std::string& t) const { return shape_.at(t); }
  OnnxGraph& graph() { return g_; }
  void SetShape(const std::string& t, Shape s) { shape_[t] = std::move(s); }
  // The checkpoint's tensors the graph never read: a sign of a different architecture.
  std::vector<std::string> Unused() const {
    std::vector<std::string> out;
    for (const auto& [name, t] : w_)
      if (name.rfind(prefix_, 0) == 0 && !used_.count(name) && name.find("num_batches_tracked") == std::string::npos)
        out.push_back(name);
    return out;
  }

 private:
  const StateDict& w_;
  std::string arch_, prefix_;
  Family family_;
  OnnxGraph g_;
  std::map<std::string, Shape> shape_;
  std::set<std::string> used_;
};

Status ConvertLite(const StateDict& weights, const TorchConvertOptions& options, const LiteParams& p,
                   const std::filesystem::path& out_onnx) {
  const int h = options.input_height ? options.input_height : p.resolution;
  const int w = options.input_width ? options.input_width : p.resolution;

  // Every block's arguments, and the index of each stage's last block.
  struct Block {
    int kernel, stride, expand, in, out;
  };
  std::vector<Block> blocks;
  std::vector<int> stage_end;
  const int nstages = int(std::size(kStages));
  for (int s = 0; s < nstages; ++s) {
    const StageArgs a = kStages[s];
    const bool fixed = s == 0 || s == nstages - 1;  // fix_head_stem: first and last stages keep their depth
    const int repeats = fixed ? a.repeats : int(std::ceil(p.depth * a.repeats - 1e-9));
    const int in = s == 0 ? 32 : RoundFilters(a.in, p.width), out = RoundFilters(a.out, p.width);
    for (int r = 0; r < repeats; ++r)
      blocks.push_back({a.kernel, r == 0 ? a.stride : 1, a.expand, r == 0 ? in : out, out});
    stage_end.push_back(int(blocks.size()) - 1);
  }

  // Which tensors are wanted, and how deep the graph must go (-1 stem, blocks, N head, N+1 logits).
  const int nb = int(blocks.size());
  std::vector<std::string> outputs = options.outputs.empty() ? std::vector<std::string>{"logits"} : options.outputs;
  std::map<std::string, std::string> alias;  // output name -> the tensor it is
  int deepest = -1;
  for (const auto& o : outputs) {
    int at = -2;
    std::string tensor = o;
    auto number = [&o](size_t from, size_t to) -> int {
      const std::string digits = o.substr(from, to - from);
      if (digits.empty() || digits.size() > 3 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
      return std::stoi(digits);
    };
    if (o == "stem") at = -1;
    else if (o == "head") at = nb;
    else if (o == "logits") at = nb + 1;
    else if (o.rfind("stage", 0) == 0 && number(5, o.size()) >= 1 && number(5, o.size()) <= nstages)
      at = stage_end[size_t(number(5, o.size()) - 1)], tensor = "block" + std::to_string(at);
    else if (o.rfind("block", 0) == 0 && o.size() > 7 && o.compare(o.size() - 7, 7, "_expand") == 0 &&
             number(5, o.size() - 7) >= 0 && number(5, o.size() - 7) < nb && blocks[size_t(number(5, o.size() - 7))].expand != 1)
      at = number(5, o.size() - 7);
    else if (o.rfind("block", 0) == 0 && number(5, o.size()) >= 0 && number(5, o.size()) < nb)
      at = number(5, o.size());
    if (at == -2)
      return InvalidArgument("no output '" + o + "' in " + options.arch + ": stem, block0-block" + std::to_string(nb - 1) +
                             ", blockK_expand, stage1-stage" + std::to_string(nstages) + ", head or logits");
    alias[o] = tensor;
    deepest = std::max(deepest, at);
  }

  GraphBuilder b(weights, options.arch, options.prefix, kTensorFlowFamily, h, w);
  auto x = b.ConvBn("input", "_conv_stem", "_bn0", 32, 3, 2, false, Act::kRelu6, "stem");
  if (!x.ok()) return x.status();
  for (int i = 0; i < nb && i <= deepest; ++i) {
    const Block& k = blocks[size_t(i)];
    const std::string pre = "_blocks." + std::to_string(i), name = "block" + std::to_string(i);
    if (b.ShapeOf(*x)[1] != k.in) return Internal("block " + std::to_string(i) + " reads the wrong width");
    std::string y = *x;
    const int mid = k.in * k.expand;
    if (k.expand != 1) {
      auto e = b.ConvBn(y, pre + "._expand_conv", pre + "._bn0", mid, 1, 1, false, Act::kRelu6, name + "_expand");
      if (!e.ok()) return e.status();
      y = *e;
    }
    auto d = b.ConvBn(y, pre + "._depthwise_conv", pre + "._bn1", mid, k.kernel, k.stride, true, Act::kRelu6, name + "_dw");
    if (!d.ok()) return d.status();
    const bool skip = k.stride == 1 && k.in == k.out;
    auto pr = b.ConvBn(*d, pre + "._project_conv", pre + "._bn2", k.out, 1, 1, false, Act::kNone, skip ? name + "_project" : name);
    if (!pr.ok()) return pr.status();
    if (skip) {
      b.graph().Node("Sum", {*pr, *x}, name);
      b.SetShape(name, b.ShapeOf(*pr));
    }
    x = name;
  }
  if (deepest >= nb) {
    x = b.ConvBn(*x, "_conv_head", "_bn1", 1280, 1, 1, false, Act::kRelu6, "head");
    if (!x.ok()) return x.status();
  }
  if (deepest > nb) {
    if (Status st = b.Classifier("head", "_fc", "logits"); !st.ok()) return st;
  }
  for (const auto& o : outputs) {
    b.Alias(alias[o], o);
    b.graph().Output(o, b.ShapeOf(o));
  }
  return b.graph().Write(out_onnx);
}

const std::map<std::string, std::vector<int>> kResNet = {
    {"resnet50", {3, 4, 6, 3}}, {"resnet101", {3, 4, 23, 3}}, {"resnet152", {3, 8, 36, 3}}};

// Outputs: stem (after the max pool, stride 4), layer1-layer4 (strides 4, 8, 16, 32; 256 to 2048
// channels), logits. PatchCore reads layer2 and layer3.
Status ConvertResNet(const StateDict& weights, const TorchConvertOptions& options, const std::vector<int>& depth,
                     const std::filesystem::path& out_onnx) {
  const int h = options.input_height ? options.input_height : 224;
  const int w = options.input_width ? options.input_width : 224;
  std::vector<std::string> outputs = options.outputs.empty() ? std::vector<std::string>{"logits"} : options.outputs;
  int deepest = 0;  // 0 stem, 1-4 layers, 5 logits
  for (const auto& o : outputs) {
    int at = -1;
    if (o == "stem") at = 0;
    else if (o == "logits") at = 5;
    else if (o.size() == 6 && o.rfind("layer", 0) == 0 && o[5] >= '1' && o[5] <= '4') at = o[5] - '0';
    if (at < 0) return InvalidArgument("no output '" + o + "' in " + options.arch + ": stem, layer1-layer4 or logits");
    deepest = std::max(deepest, at);
  }
  GraphBuilder b(weights, options.arch, options.prefix, kPyTorchFamily, h, w);
  auto x = b.ConvBn("input", "conv1", "bn1", 64, 7, 2, false, Act::kRelu, "conv1_out");
  if (!x.ok()) return x.status();
  x = b.MaxPool(*x, 3, 2, 1, "stem");
  for (int l = 1; l <= 4 && l <= deepest; ++l) {
    const int width = 64 << (l - 1), out = width * 4;
    for (int i = 0; i < depth[size_t(l - 1)]; ++i) {
      const std::string pre = "layer" + std::to_string(l) + "." + std::to_string(i), name = "layer" + std::to_string(l) + "_" + std::to_string(i);
      const int stride = i == 0 && l > 1 ? 2 : 1;
      auto c1 = b.ConvBn(*x, pre + ".conv1", pre + ".bn1", width, 1, 1, false, Act::kRelu, name + "_a");
      if (!c1.ok()) return c1.status();
      auto c2 = b.ConvBn(*c1, pre + ".conv2", pre + ".bn2", width, 3, stride, false, Act::kRelu, name + "_b");
      if (!c2.ok()) return c2.status();
      auto c3 = b.ConvBn(*c2, pre + ".conv3", pre + ".bn3", out, 1, 1, false, Act::kNone, name + "_c");
      if (!c3.ok()) return c3.status();
      std::string shortcut = *x;
      if (i == 0) {  // the first block of a layer changes the width (and, but in layer1, the stride)
        auto d = b.ConvBn(*x, pre + ".downsample.0", pre + ".downsample.1", out, 1, stride, false, Act::kNone, name + "_down");
        if (!d.ok()) return d.status();
        shortcut = *d;
      }
      x = b.Add(*c3, shortcut, true, name);
    }
    b.Alias(*x, "layer" + std::to_string(l));
    x = "layer" + std::to_string(l);
  }
  if (deepest == 5) {
    if (Status st = b.Classifier("layer4", "fc", "logits"); !st.ok()) return st;
  }
  for (const auto& o : outputs) b.graph().Output(o, b.ShapeOf(o));
  return b.graph().Write(out_onnx);
}

}  // namespace

std::vector<std::string> TorchArchitectures() {
  std::vector<std::string> out;
  for (const auto& [name, p] : kLite) out.push_back(name);
  for (const auto& [name, d] : kResNet) out.push_back(name);
  return out;
}

Status ConvertStateDictToOnnx(const StateDict& weights, const TorchConvertOptions& options,
                              const std::filesystem::path& out_onnx) {
  const int h = options.input_height, w = options.input_width;
  if (h < 0 || w < 0 || (h && h < 32) || (w && w < 32) || h > 4096 || w > 4096)
    return InvalidArgument("the input size must be 32-4096 pixels");
  if (auto lite = kLite.find(options.arch); lite != kLite.end()) return ConvertLite(weights, options, lite->second, out_onnx);
  if (auto res = kResNet.find(options.arch); res != kResNet.end()) return ConvertResNet(weights, options, res->second, out_onnx);
  std::string known;
  for (const auto& a : TorchArchitectures()) known += (known.empty() ? "" : ", ") + a;
  return InvalidArgument("unknown architecture '" + options.arch + "' (known: " + known + ")");
}

Status ConvertTorchToOnnx(const std::filesystem::path& checkpoint, const TorchConvertOptions& options,
                          const std::filesystem::path& out_onnx) {
  if (!kLite.count(options.arch) && !kResNet.count(options.arch)) return ConvertStateDictToOnnx({}, options, out_onnx);  // names the known ones
  auto weights = ReadTorchCheckpoint(checkpoint);
  if (!weights.ok()) return weights.status();
  return ConvertStateDictToOnnx(*weights, options, out_onnx);
}

}  // namespace zeroqc
