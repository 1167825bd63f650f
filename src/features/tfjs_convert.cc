#include "features/tfjs_convert.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "features/onnx_graph.h"

namespace zeroqc {
namespace {

using json = nlohmann::json;

struct Tensor {
  Shape shape;  // as stored by Keras (e.g. kernel [kh, kw, cin, cout])
  std::vector<float> data;
};

StatusOr<std::string> ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return IoError("cannot open " + p.string());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Dequantises every tensor of the manifest: value = q * scale + min for quantised ones.
StatusOr<std::map<std::string, Tensor>> LoadWeights(const json& manifest, const std::string& bytes) {
  std::map<std::string, Tensor> out;
  size_t offset = 0;
  for (const auto& group : manifest) {
    for (const auto& w : group.at("weights")) {
      Tensor t;
      t.shape = w.at("shape").get<Shape>();
      size_t count = 1;
      for (auto d : t.shape) count *= static_cast<size_t>(d);
      t.data.resize(count);
      std::string dtype = w.at("dtype").get<std::string>();
      if (dtype != "float32") return Unsupported("weight " + w.at("name").get<std::string>() + " has dtype " + dtype);
      if (w.contains("quantization")) {
        const auto& q = w.at("quantization");
        std::string qtype = q.at("dtype").get<std::string>();
        size_t width = qtype == "uint8" ? 1 : qtype == "uint16" ? 2 : 0;
        if (width == 0 || !q.contains("scale")) return Unsupported("quantisation " + qtype + " is not supported");
        if (offset + count * width > bytes.size()) return Corrupt("weights.bin is shorter than the manifest");
        double scale = q.at("scale").get<double>(), min = q.at("min").get<double>();
        for (size_t i = 0; i < count; ++i) {
          const auto* p = reinterpret_cast<const uint8_t*>(bytes.data() + offset + i * width);
          double v = width == 1 ? p[0] : (p[0] | (p[1] << 8));  // little endian
          t.data[i] = static_cast<float>(v * scale + min);
        }
        offset += count * width;
      } else {
        if (offset + count * 4 > bytes.size()) return Corrupt("weights.bin is shorter than the manifest");
        std::memcpy(t.data.data(), bytes.data() + offset, count * 4);
        offset += count * 4;
      }
      out[w.at("name").get<std::string>()] = std::move(t);
    }
  }
  if (offset != bytes.size()) return Corrupt("weights.bin is longer than the manifest describes");
  return out;
}

// The graph plus the weights it reads them from.
class Builder : public OnnxGraph {
 public:
  Builder(std::map<std::string, Tensor> weights, const std::string& name) : OnnxGraph(name), weights_(std::move(weights)) {}

  StatusOr<const Tensor*> Weight(const std::string& name) {
    auto it = weights_.find(name);
    if (it == weights_.end()) return NotFound("weight " + name + " is missing from the manifest");
    return &it->second;
  }

 private:
  std::map<std::string, Tensor> weights_;
};

struct LayerRef {
  const json* layer;
  std::vector<std::string> inputs;
};

}  // namespace

Status ConvertTfjsToOnnx(const std::filesystem::path& model_json, const std::filesystem::path& weights_bin,
                         const TfjsConvertOptions& options, const std::filesystem::path& out_onnx) {
  auto text = ReadFile(model_json);
  if (!text.ok()) return text.status();
  auto bytes = ReadFile(weights_bin);
  if (!bytes.ok()) return bytes.status();
  json model = json::parse(*text, nullptr, false);
  if (model.is_discarded() || !model.contains("modelTopology") || !model.contains("weightsManifest"))
    return Corrupt(model_json.string() + " is not a TF.js model.json with modelTopology and weightsManifest");

  try {
    const json& topo = model["modelTopology"];
    const json& cfg = topo.contains("model_config") ? topo["model_config"] : topo;
    std::string cls = cfg.value("class_name", "");
    if (cls != "Model" && cls != "Functional")
      return Unsupported("only functional Keras models are supported, this one is " + cls);
    const json& conf = cfg["config"];

    auto weights = LoadWeights(model["weightsManifest"], *bytes);
    if (!weights.ok()) return weights.status();

    // Index layers, their inputs and consumers.
    std::vector<LayerRef> layers;
    std::map<std::string, int> index;
    std::map<std::string, int> consumers;
    for (const auto& l : conf.at("layers")) {
      LayerRef ref{&l, {}};
      const auto& nodes = l.at("inbound_nodes");
      if (nodes.size() > 1) return Unsupported("layer " + l["name"].get<std::string>() + " is shared");
      if (!nodes.empty())
        for (const auto& in : nodes[0]) ref.inputs.push_back(in[0].get<std::string>());
      for (const auto& in : ref.inputs) consumers[in]++;
      index[l.at("name").get<std::string>()] = static_cast<int>(layers.size());
      layers.push_back(std::move(ref));
    }
    std::vector<std::string> outputs = options.outputs;
    if (outputs.empty())
      for (const auto& o : conf.at("output_layers")) outputs.push_back(o[0].get<std::string>());

    // Keep only what the requested outputs depend on.
    std::set<std::string> needed;
    std::vector<std::string> stack = outputs;
    while (!stack.empty()) {
      std::string n = stack.back();
      stack.pop_back();
      if (!index.count(n)) return NotFound("the model has no layer named " + n);
      if (!needed.insert(n).second) continue;
      for (const auto& in : layers[index[n]].inputs) stack.push_back(in);
    }

    Builder b(std::move(*weights), conf.value("name", "keras_model"));

    std::map<std::string, std::string> tensor;  // layer name -> ONNX tensor holding its output
    std::map<std::string, Shape> shape;         // layer name -> NCHW shape
    std::map<std::string, std::string> folded;  // conv layer -> BN layer folded into it
    // ZeroPadding2D layer -> the pads (top, left, bottom, right) its convolutions add; its tensor is
    // the one before the padding.
    std::map<std::string, std::vector<int64_t>> zero_pads;
    if (options.fold_batchnorm) {
      for (const auto& ref : layers) {
        const json& l = *ref.layer;
        if (l["class_name"] != "BatchNormalization" || ref.inputs.size() != 1) continue;
        const std::string& src = ref.inputs[0];
        const json& sl = *layers[index[src]].layer;
        if ((sl["class_name"] == "Conv2D" || sl["class_name"] == "DepthwiseConv2D") && consumers[src] == 1 &&
            sl["config"].value("activation", "linear") == "linear")
          folded[src] = l["name"].get<std::string>();
      }
    }

    auto activation = [&](const std::string& act, const std::string& in, const std::string& out,
                          const std::string& lname) -> Status {
      if (act == "linear") {
        b.Node("Identity", {in}, out);
      } else if (act == "relu") {
        b.Node("Relu", {in}, out);
      } else if (act == "sigmoid") {
        b.Node("Sigmoid", {in}, out);
      } else if (act == "tanh") {
        b.Node("Tanh", {in}, out);
      } else if (act == "softmax") {
        if (shape[lname].size() != 2) return Unsupported("softmax is supported on 2-D outputs only (" + lname + ")");
        OnnxGraph::Int(b.Node("Softmax", {in}, out), "axis", 1);
      } else {
        return Unsupported("activation " + act + " of layer " + lname);
      }
      return Status::Ok();
    };

    for (const auto& ref : layers) {
      const json& l = *ref.layer;
      const std::string name = l["name"].get<std::string>();
      if (!needed.count(name)) continue;
      const std::string kind = l["class_name"].get<std::string>();
      const json& c = l["config"];
      std::vector<std::string> in;
      for (const auto& i : ref.inputs) in.push_back(tensor.at(i));
      const Shape s0 = ref.inputs.empty() ? Shape{} : shape.at(ref.inputs[0]);

      if (kind == "InputLayer") {
        b.Input("input", {1, 3, options.input_height, options.input_width});
        tensor[name] = "input";
        shape[name] = {1, 3, options.input_height, options.input_width};
      } else if (kind == "Conv2D" || kind == "DepthwiseConv2D") {
        if (c.value("data_format", "channels_last") != "channels_last")
          return Unsupported("layer " + name + ": channels_first data format");
        const bool depthwise = kind == "DepthwiseConv2D";
        auto k = b.Weight(name + (depthwise ? "/depthwise_kernel" : "/kernel"));
        if (!k.ok()) return k.status();
        if ((*k)->shape.size() != 4) return Corrupt("layer " + name + ": the kernel is not 4-D");
        // Keras kernels: [kh, kw, cin, cout], depthwise [kh, kw, cin, multiplier]; ONNX wants
        // [cout, cin / group, kh, kw], a depthwise one with group = cin.
        const Shape& ks = (*k)->shape;
        const int64_t kh = ks[0], kw = ks[1], cin = ks[2], cout = depthwise ? ks[2] * ks[3] : ks[3];
        const int64_t group = depthwise ? cin : 1, per = cin / group;  // input channels per output
        if (cin != s0[1]) return Corrupt("layer " + name + ": kernel expects " + std::to_string(cin) + " channels");
        auto strides = c.at("strides").get<std::vector<int64_t>>();
        auto dil = c.value("dilation_rate", std::vector<int64_t>{1, 1});
        std::vector<float> w(kh * kw * per * cout), bias(cout, 0.f);
        for (int64_t y = 0; y < kh; ++y)
          for (int64_t x = 0; x < kw; ++x)
            for (int64_t i = 0; i < cin; ++i)
              for (int64_t o = 0; o < ks[3]; ++o) {
                const float v = (*k)->data[((y * kw + x) * cin + i) * ks[3] + o];
                if (depthwise) w[((i * ks[3] + o) * kh + y) * kw + x] = v;
                else w[((o * cin + i) * kh + y) * kw + x] = v;
              }
        if (c.value("use_bias", false)) {
          auto bb = b.Weight(name + "/bias");
          if (!bb.ok()) return bb.status();
          bias = (*bb)->data;
        }
        std::string out = name;
        if (folded.count(name)) {  // y = gamma * (conv + b - mean) / sqrt(var + eps) + beta
          const std::string bn = folded[name];
          const json& bc = (*layers[index[bn]].layer)["config"];
          auto mean = b.Weight(bn + "/moving_mean");
          auto var = b.Weight(bn + "/moving_variance");
          if (!mean.ok()) return mean.status();
          if (!var.ok()) return var.status();
          std::vector<float> gamma(cout, 1.f), beta(cout, 0.f);
          if (bc.value("scale", true)) gamma = (*b.Weight(bn + "/gamma"))->data;
          if (bc.value("center", true)) beta = (*b.Weight(bn + "/beta"))->data;
          double eps = bc.value("epsilon", 1e-3);
          for (int64_t o = 0; o < cout; ++o) {
            double f = gamma[o] / std::sqrt((*var)->data[o] + eps);
            for (int64_t j = 0; j < per * kh * kw; ++j) w[o * per * kh * kw + j] *= static_cast<float>(f);
            bias[o] = static_cast<float>((bias[o] - (*mean)->data[o]) * f + beta[o]);
          }
          out = bn;
        }
        std::vector<int64_t> pads{0, 0, 0, 0};
        if (c.at("padding") == "same") {
          auto [t, bt] = SamePads(s0[2], (kh - 1) * dil[0] + 1, strides[0]);
          auto [lft, r] = SamePads(s0[3], (kw - 1) * dil[1] + 1, strides[1]);
          pads = {t, lft, bt, r};
        }
        const int64_t oh = (s0[2] + pads[0] + pads[2] - ((kh - 1) * dil[0] + 1)) / strides[0] + 1;
        const int64_t ow = (s0[3] + pads[1] + pads[3] - ((kw - 1) * dil[1] + 1)) / strides[1] + 1;
        // A ZeroPadding2D before it becomes the convolution's own pads (in[0] is its unpadded input).
        if (auto z = zero_pads.find(ref.inputs[0]); z != zero_pads.end())
          for (int i = 0; i < 4; ++i) pads[i] += z->second[i];
        b.Initializer(name + "_W", {cout, per, kh, kw}, w);
        b.Initializer(name + "_B", {cout}, bias);
        std::string act = c.value("activation", "linear");
        std::string conv_out = act == "linear" ? out : out + "_pre";
        auto* n = b.Node("Conv", {in[0], name + "_W", name + "_B"}, conv_out);
        OnnxGraph::Ints(n, "kernel_shape", {kh, kw});
        OnnxGraph::Ints(n, "strides", strides);
        OnnxGraph::Ints(n, "dilations", dil);
        OnnxGraph::Ints(n, "pads", pads);
        if (group != 1) OnnxGraph::Int(n, "group", group);
        shape[name] = {1, cout, oh, ow};
        if (act != "linear") ZQ_RETURN_IF_ERROR(activation(act, conv_out, out, name));
        tensor[name] = out;
        if (folded.count(name)) tensor[folded[name]] = out, shape[folded[name]] = shape[name];
      } else if (kind == "BatchNormalization") {
        if (tensor.count(name)) continue;  // folded into its convolution
        int64_t ch = s0[1];
        std::vector<float> gamma(ch, 1.f), beta(ch, 0.f);
        if (c.value("scale", true)) gamma = (*b.Weight(name + "/gamma"))->data;
        if (c.value("center", true)) beta = (*b.Weight(name + "/beta"))->data;
        auto mean = b.Weight(name + "/moving_mean");
        auto var = b.Weight(name + "/moving_variance");
        if (!mean.ok()) return mean.status();
        if (!var.ok()) return var.status();
        b.Initializer(name + "_scale", {ch}, gamma);
        b.Initializer(name + "_bias", {ch}, beta);
        b.Initializer(name + "_mean", {ch}, (*mean)->data);
        b.Initializer(name + "_var", {ch}, (*var)->data);
        auto* n = b.Node("BatchNormalization",
                         {in[0], name + "_scale", name + "_bias", name + "_mean", name + "_var"}, name);
        OnnxGraph::Float(n, "epsilon", c.value("epsilon", 1e-3f));
        tensor[name] = name;
        shape[name] = s0;
      } else if (kind == "Activation") {
        shape[name] = s0;
        ZQ_RETURN_IF_ERROR(activation(c.at("activation").get<std::string>(), in[0], name, name));
        tensor[name] = name;
      } else if (kind == "MaxPooling2D" || kind == "AveragePooling2D") {
        auto pool = c.at("pool_size").get<std::vector<int64_t>>();
        auto strides = c.value("strides", pool);
        std::vector<int64_t> pads{0, 0, 0, 0};
        if (c.at("padding") == "same") {
          auto [t, bt] = SamePads(s0[2], pool[0], strides[0]);
          auto [lft, r] = SamePads(s0[3], pool[1], strides[1]);
          pads = {t, lft, bt, r};
        }
        // Keras average pooling divides by the number of real pixels: ONNX count_include_pad = 0.
        auto* n = b.Node(kind == "MaxPooling2D" ? "MaxPool" : "AveragePool", {in[0]}, name);
        OnnxGraph::Ints(n, "kernel_shape", pool);
        OnnxGraph::Ints(n, "strides", strides);
        OnnxGraph::Ints(n, "pads", pads);
        int64_t oh = (s0[2] + pads[0] + pads[2] - pool[0]) / strides[0] + 1;
        int64_t ow = (s0[3] + pads[1] + pads[3] - pool[1]) / strides[1] + 1;
        shape[name] = {1, s0[1], oh, ow};
        tensor[name] = name;
      } else if (kind == "GlobalAveragePooling2D") {
        b.Node("GlobalAveragePool", {in[0]}, name + "_gap");
        OnnxGraph::Int(b.Node("Flatten", {name + "_gap"}, name), "axis", 1);
        shape[name] = {1, s0[1]};
        tensor[name] = name;
      } else if (kind == "Concatenate" || kind == "Add") {
        int64_t axis = c.value("axis", -1);
        for (size_t i = 1; i < ref.inputs.size(); ++i)
          if (shape.at(ref.inputs[i]).size() != s0.size()) return Corrupt("layer " + name + ": rank mismatch");
        Shape s = s0;
        if (kind == "Concatenate") {
          if (!(axis == -1 || axis == static_cast<int64_t>(s0.size()) - 1))
            return Unsupported("layer " + name + ": concatenation along a non-channel axis");
          s[1] = 0;
          for (const auto& i : ref.inputs) s[1] += shape.at(i)[1];
          OnnxGraph::Int(b.Node("Concat", in, name), "axis", 1);
        } else {
          b.Node("Sum", in, name);
        }
        shape[name] = s;
        tensor[name] = name;
      } else if (kind == "ZeroPadding2D") {
        // Folded into the convolutions that read it (MobileNet pads before each strided one).
        for (const auto& other : layers) {
          const bool reads = std::find(other.inputs.begin(), other.inputs.end(), name) != other.inputs.end();
          const std::string k2 = (*other.layer)["class_name"].get<std::string>();
          if (reads && k2 != "Conv2D" && k2 != "DepthwiseConv2D")
            return Unsupported("layer " + name + ": zero padding is supported before convolutions only");
        }
        if (std::find(outputs.begin(), outputs.end(), name) != outputs.end())
          return Unsupported("layer " + name + ": zero padding cannot be an output");
        // Keras: an int, [rows, cols] or [[top, bottom], [left, right]].
        std::vector<int64_t> tb, lr;
        const json& p = c.at("padding");
        if (p.is_number()) tb = lr = {p.get<int64_t>(), p.get<int64_t>()};
        else if (p.size() == 2 && p[0].is_number()) tb = {p[0], p[0]}, lr = {p[1], p[1]};
        else tb = p.at(0).get<std::vector<int64_t>>(), lr = p.at(1).get<std::vector<int64_t>>();
        if (tb.size() != 2 || lr.size() != 2) return Corrupt("layer " + name + ": padding is not [[top, bottom], [left, right]]");
        zero_pads[name] = {tb[0], lr[0], tb[1], lr[1]};
        shape[name] = {1, s0[1], s0[2] + tb[0] + tb[1], s0[3] + lr[0] + lr[1]};
        tensor[name] = in[0];
      } else if (kind == "ReLU") {
        if (c.value("negative_slope", 0.0) != 0.0 || c.value("threshold", 0.0) != 0.0)
          return Unsupported("layer " + name + ": a leaky or thresholded ReLU");
        shape[name] = s0;
        tensor[name] = name;
        if (!c.contains("max_value") || c["max_value"].is_null()) {
          b.Node("Relu", {in[0]}, name);
        } else {  // ReLU6
          auto* n = b.Node("Clip", {in[0]}, name);
          OnnxGraph::Float(n, "min", 0.f);
          OnnxGraph::Float(n, "max", c["max_value"].get<float>());
        }
      } else if (kind == "Dropout") {
        tensor[name] = in[0];  // identity at inference
        shape[name] = s0;
      } else if (kind == "Flatten") {
        std::string src = in[0];
        if (s0.size() == 4 && (s0[2] > 1 || s0[3] > 1)) {  // Keras flattens channels-last
          OnnxGraph::Ints(b.Node("Transpose", {src}, name + "_nhwc"), "perm", {0, 2, 3, 1});
          src = name + "_nhwc";
        }
        OnnxGraph::Int(b.Node("Flatten", {src}, name), "axis", 1);
        int64_t f = 1;
        for (size_t i = 1; i < s0.size(); ++i) f *= s0[i];
        shape[name] = {1, f};
        tensor[name] = name;
      } else if (kind == "Dense") {
        if (s0.size() != 2) return Unsupported("layer " + name + ": Dense on a non-flat input");
        auto k = b.Weight(name + "/kernel");
        if (!k.ok()) return k.status();
        int64_t units = (*k)->shape[1];
        std::vector<float> bias(units, 0.f);
        if (c.value("use_bias", true)) bias = (*b.Weight(name + "/bias"))->data;
        // Keras stores [in, out]; OpenCV's Gemm importer expects the [out, in] + transB form.
        int64_t fan_in = (*k)->shape[0];
        std::vector<float> wt(fan_in * units);
        for (int64_t i = 0; i < fan_in; ++i)
          for (int64_t o = 0; o < units; ++o) wt[o * fan_in + i] = (*k)->data[i * units + o];
        b.Initializer(name + "_W", {units, fan_in}, wt);
        b.Initializer(name + "_B", {units}, bias);
        std::string act = c.value("activation", "linear");
        std::string gemm_out = act == "linear" ? name : name + "_pre";
        OnnxGraph::Int(b.Node("Gemm", {in[0], name + "_W", name + "_B"}, gemm_out), "transB", 1);
        shape[name] = {1, units};
        if (act != "linear") ZQ_RETURN_IF_ERROR(activation(act, gemm_out, name, name));
        tensor[name] = name;
      } else {
        return Unsupported("layer " + name + " of type " + kind + " is not supported by the converter");
      }
    }

    for (const auto& o : outputs) {
      std::string t = tensor.at(o);
      if (t != o) b.Node("Identity", {t}, o);
      b.Output(o, shape.at(o));
    }
    ZQ_RETURN_IF_ERROR(b.Write(out_onnx));
  } catch (const json::exception& e) {
    return Corrupt(model_json.string() + ": unexpected topology: " + e.what());
  } catch (const std::out_of_range& e) {
    return Corrupt(model_json.string() + ": layer refers to an unknown input");
  }
  return Status::Ok();
}

}  // namespace zeroqc
