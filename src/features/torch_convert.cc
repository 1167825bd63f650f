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

class LiteBuilder {
 public:
  LiteBuilder(const StateDict& w, const std::string& arch, int h, int wd) : w_(w), arch_(arch), g_(arch) {
    g_.Input("input", {1, 3, h, wd});
    shape_["input"] = {1, 3, h, wd};
  }

  StatusOr<const TorchTensor*> Get(const std::string& name, const Shape& expect) {
    auto it = w_.find(name);
    if (it == w_.end()) return Corrupt("the checkpoint is not " + arch_ + ": it has no tensor " + name);
    if (it->second.shape != expect)
      return Corrupt("the checkpoint is not " + arch_ + ": " + name + " is " + Dims(it->second.shape) + ", expected " +
                     Dims(expect));
    used_.insert(name);
    return &it->second;
  }

  // A bias-free convolution followed by BatchNorm (folded into it) and optionally ReLU6, with
  // TensorFlow's "same" padding at the size it actually gets. Returns the output tensor's name.
  StatusOr<std::string> ConvBn(const std::string& in, const std::string& conv, const std::string& bn, int cout,
                               int kernel, int stride, bool depthwise, bool relu6, const std::string& out) {
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
    if (w_.count(bn + ".num_batches_tracked")) used_.insert(bn + ".num_batches_tracked");
    std::vector<float> weight = (*k)->data, bias(static_cast<size_t>(cout));
    const size_t each = size_t(per) * kernel * kernel;
    for (int o = 0; o < cout; ++o) {  // y = gamma * (conv - mean) / sqrt(var + eps) + beta
      const double f = gamma->data[o] / std::sqrt(double(var->data[o]) + kEps);
      for (size_t j = 0; j < each; ++j) weight[o * each + j] = float(weight[o * each + j] * f);
      bias[o] = float(beta->data[o] - mean->data[o] * f);
    }
    auto [top, bottom] = SamePads(s[2], kernel, stride);
    auto [left, right] = SamePads(s[3], kernel, stride);
    const std::string conv_out = relu6 ? out + "_conv" : out;
    g_.Initializer(conv + "_W", {cout, per, kernel, kernel}, weight);
    g_.Initializer(conv + "_B", {cout}, bias);
    auto* n = g_.Node("Conv", {in, conv + "_W", conv + "_B"}, conv_out);
    OnnxGraph::Ints(n, "kernel_shape", {kernel, kernel});
    OnnxGraph::Ints(n, "strides", {stride, stride});
    OnnxGraph::Ints(n, "dilations", {1, 1});
    OnnxGraph::Ints(n, "pads", {top, left, bottom, right});
    if (depthwise) OnnxGraph::Int(n, "group", cin);
    if (relu6) {
      auto* c = g_.Node("Clip", {conv_out}, out);
      OnnxGraph::Float(c, "min", 0.f);
      OnnxGraph::Float(c, "max", 6.f);
    }
    shape_[out] = {1, cout, (s[2] + stride - 1) / stride, (s[3] + stride - 1) / stride};
    return out;
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
      if (!used_.count(name) && name.find("num_batches_tracked") == std::string::npos) out.push_back(name);
    return out;
  }

  static constexpr double kEps = 1e-3;  // the Lite family's BatchNorm epsilon (TensorFlow's)

 private:
  const StateDict& w_;
  std::string arch_;
  OnnxGraph g_;
  std::map<std::string, Shape> shape_;
  std::set<std::string> used_;
};

}  // namespace

std::vector<std::string> TorchArchitectures() {
  std::vector<std::string> out;
  for (const auto& [name, p] : kLite) out.push_back(name);
  return out;
}

Status ConvertStateDictToOnnx(const StateDict& weights, const TorchConvertOptions& options,
                              const std::filesystem::path& out_onnx) {
  auto arch = kLite.find(options.arch);
  if (arch == kLite.end()) {
    std::string known;
    for (const auto& a : TorchArchitectures()) known += (known.empty() ? "" : ", ") + a;
    return InvalidArgument("unknown architecture '" + options.arch + "' (known: " + known + ")");
  }
  const LiteParams p = arch->second;
  const int h = options.input_height ? options.input_height : p.resolution;
  const int w = options.input_width ? options.input_width : p.resolution;
  if (h < 32 || w < 32 || h > 4096 || w > 4096) return InvalidArgument("the input size must be 32-4096 pixels");

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

  LiteBuilder b(weights, options.arch, h, w);
  auto x = b.ConvBn("input", "_conv_stem", "_bn0", 32, 3, 2, false, true, "stem");
  if (!x.ok()) return x.status();
  for (int i = 0; i < nb && i <= deepest; ++i) {
    const Block& k = blocks[size_t(i)];
    const std::string pre = "_blocks." + std::to_string(i), name = "block" + std::to_string(i);
    if (b.ShapeOf(*x)[1] != k.in) return Internal("block " + std::to_string(i) + " reads the wrong width");
    std::string y = *x;
    const int mid = k.in * k.expand;
    if (k.expand != 1) {
      auto e = b.ConvBn(y, pre + "._expand_conv", pre + "._bn0", mid, 1, 1, false, true, name + "_expand");
      if (!e.ok()) return e.status();
      y = *e;
    }
    auto d = b.ConvBn(y, pre + "._depthwise_conv", pre + "._bn1", mid, k.kernel, k.stride, true, true, name + "_dw");
    if (!d.ok()) return d.status();
    const bool skip = k.stride == 1 && k.in == k.out;
    auto pr = b.ConvBn(*d, pre + "._project_conv", pre + "._bn2", k.out, 1, 1, false, false, skip ? name + "_project" : name);
    if (!pr.ok()) return pr.status();
    if (skip) {
      b.graph().Node("Sum", {*pr, *x}, name);
      b.SetShape(name, b.ShapeOf(*pr));
    }
    x = name;
  }
  if (deepest >= nb) {
    x = b.ConvBn(*x, "_conv_head", "_bn1", 1280, 1, 1, false, true, "head");
    if (!x.ok()) return x.status();
  }
  if (deepest > nb) {
    auto fw = b.Get("_fc.weight", {1000, 1280});
    if (!fw.ok()) return fw.status();
    auto fb = b.Get("_fc.bias", {1000});
    if (!fb.ok()) return fb.status();
    b.graph().Node("GlobalAveragePool", {"head"}, "head_pool");
    OnnxGraph::Int(b.graph().Node("Flatten", {"head_pool"}, "head_flat"), "axis", 1);
    b.graph().Initializer("_fc_W", {1000, 1280}, (*fw)->data);  // [out, in] with transB, as OpenCV reads Gemm
    b.graph().Initializer("_fc_B", {1000}, (*fb)->data);
    OnnxGraph::Int(b.graph().Node("Gemm", {"head_flat", "_fc_W", "_fc_B"}, "logits"), "transB", 1);
    b.SetShape("logits", {1, 1000});
    // The whole network was read: any tensor left over means another architecture.
    if (auto unused = b.Unused(); !unused.empty())
      return Corrupt("the checkpoint is not " + options.arch + ": it has " + std::to_string(unused.size()) +
                     " tensors the architecture does not use, e.g. " + unused.front());
  }
  for (const auto& o : outputs) {
    b.Alias(alias[o], o);
    b.graph().Output(o, b.ShapeOf(o));
  }
  return b.graph().Write(out_onnx);
}

Status ConvertTorchToOnnx(const std::filesystem::path& checkpoint, const TorchConvertOptions& options,
                          const std::filesystem::path& out_onnx) {
  if (kLite.find(options.arch) == kLite.end()) return ConvertStateDictToOnnx({}, options, out_onnx);  // names the known ones
  auto weights = ReadTorchCheckpoint(checkpoint);
  if (!weights.ok()) return weights.status();
  return ConvertStateDictToOnnx(*weights, options, out_onnx);
}

}  // namespace zeroqc
