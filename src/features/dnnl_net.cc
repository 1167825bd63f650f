#include "features/dnnl_net.h"

#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.hpp>
#include <onnx/onnx_pb.h>

namespace zeroqc {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
constexpr auto kF32 = memory::data_type::f32;

std::vector<int64_t> Ints(const onnx::NodeProto& n, const char* name, std::vector<int64_t> fallback) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return {a.ints().begin(), a.ints().end()};
  return fallback;
}

int64_t Int(const onnx::NodeProto& n, const char* name, int64_t fallback) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return a.i();
  return fallback;
}

float FloatAttr(const onnx::NodeProto& n, const char* name, float fallback) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return a.f();
  return fallback;
}

std::vector<float> Floats(const onnx::TensorProto& t) {
  if (!t.raw_data().empty()) {
    std::vector<float> v(t.raw_data().size() / sizeof(float));
    std::memcpy(v.data(), t.raw_data().data(), v.size() * sizeof(float));
    return v;
  }
  return {t.float_data().begin(), t.float_data().end()};
}

// The activation layout oneDNN's convolutions prefer on this CPU: asked of a typical 3x3 layer.
Tag PreferredLayout(const dnnl::engine& eng) {
  const memory::dims act{1, 64, 52, 52}, w{64, 64, 3, 3};
  dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                    memory::desc(act, kF32, Tag::any), memory::desc(w, kF32, Tag::any),
                                    memory::desc(act, kF32, Tag::any), {1, 1}, {1, 1}, {1, 1});
  dnnl::convolution_forward::primitive_desc pd(d, eng);
  for (Tag t : {Tag::nChw16c, Tag::nChw8c, Tag::nhwc, Tag::nchw})
    if (pd.dst_desc() == memory::desc(act, kF32, t)) return t;
  return Tag::nchw;
}

const char* TagName(Tag t) {
  switch (t) {
    case Tag::nChw16c: return "nChw16c";
    case Tag::nChw8c: return "nChw8c";
    case Tag::nhwc: return "nhwc";
    default: return "nchw";
  }
}

}  // namespace

struct DnnlNet::Impl {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  Tag act = Tag::nchw;
  std::string layout;
  memory input;
  struct Step {
    dnnl::primitive prim;
    std::unordered_map<int, memory> args;
  };
  std::vector<Step> steps;
  struct Out {
    memory plain;
    int c, h, w;
  };
  std::vector<Out> outs;

  // Adds a reorder of `from` into a new memory of `to`'s layout (unless they already agree).
  memory Reordered(const memory& from, const memory::desc& to) {
    if (from.get_desc() == to) return from;
    memory m(to, eng);
    steps.push_back({dnnl::reorder(from, m), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, m}}});
    return m;
  }

  Status Build(const onnx::GraphProto& g, int height, int width, const std::vector<std::string>& outputs);
};

Status DnnlNet::Impl::Build(const onnx::GraphProto& g, int height, int width, const std::vector<std::string>& outputs) {
  std::map<std::string, const onnx::TensorProto*> init;
  for (const auto& t : g.initializer()) init[t.name()] = &t;
  std::map<std::string, memory> val;
  std::string input_name;
  for (const auto& i : g.input())
    if (!init.count(i.name()) && input_name.empty()) input_name = i.name();
  if (input_name.empty()) return Unsupported("the graph has no input");
  input = memory({{1, 3, height, width}, kF32, Tag::nchw}, eng);
  val[input_name] = input;

  // A Conv whose only consumer is a Relu runs the ReLU as a post-op.
  std::map<std::string, std::vector<int>> consumers;
  for (int i = 0; i < g.node_size(); ++i)
    for (const auto& in : g.node(i).input()) consumers[in].push_back(i);
  const std::set<std::string> wanted(outputs.begin(), outputs.end());
  std::set<int> fused;

  for (int ni = 0; ni < g.node_size(); ++ni) {
    if (fused.count(ni)) continue;
    const auto& n = g.node(ni);
    const std::string& op = n.op_type();
    auto in = [&](int k) -> StatusOr<memory> {
      if (k >= n.input_size() || !val.count(n.input(k)))
        return Unsupported("node " + n.name() + ": input " + std::to_string(k) + " is not a computed tensor");
      return val[n.input(k)];
    };
    if (n.output_size() != 1) return Unsupported("node " + n.name() + " (" + op + ") has several outputs");
    const std::string out = n.output(0);
    if (op == "Identity") {
      auto x = in(0);
      if (!x.ok()) return x.status();
      val[out] = *x;
    } else if (op == "Conv") {
      auto x = in(0);
      if (!x.ok()) return x.status();
      if (n.input_size() < 2 || !init.count(n.input(1))) return Unsupported("node " + n.name() + ": weights are not constant");
      const int64_t groups = Int(n, "group", 1);
      const auto& wt = *init[n.input(1)];
      if (wt.dims_size() != 4) return Unsupported("node " + n.name() + ": weights are not 4-D");
      const memory::dims wd(wt.dims().begin(), wt.dims().end());
      const auto xd = x->get_desc().dims();
      if (groups < 1 || xd[1] != wd[1] * groups || wd[0] % groups) return Unsupported("node " + n.name() + ": channel mismatch");
      // Grouped (depthwise) weights: ONNX's [out, in / g, kh, kw] is oneDNN's [g, out / g, in / g, kh, kw].
      const memory::dims wdims = groups == 1 ? wd : memory::dims{groups, wd[0] / groups, wd[1], wd[2], wd[3]};
      const auto s = Ints(n, "strides", {1, 1}), dil = Ints(n, "dilations", {1, 1}), p = Ints(n, "pads", {0, 0, 0, 0});
      if (s.size() != 2 || dil.size() != 2 || p.size() != 4) return Unsupported("node " + n.name() + ": not a 2-D convolution");
      const int64_t oh = (xd[2] + p[0] + p[2] - ((wd[2] - 1) * dil[0] + 1)) / s[0] + 1;
      const int64_t ow = (xd[3] + p[1] + p[3] - ((wd[3] - 1) * dil[1] + 1)) / s[1] + 1;
      const memory::dims od{1, wd[0], oh, ow};
      std::vector<float> bias(wd[0], 0.f);
      if (n.input_size() > 2) {
        if (!init.count(n.input(2))) return Unsupported("node " + n.name() + ": bias is not constant");
        bias = Floats(*init[n.input(2)]);
        if (int64_t(bias.size()) != wd[0]) return Unsupported("node " + n.name() + ": bias size");
      }
      std::string result = out;
      dnnl::post_ops po;
      if (auto& c = consumers[out]; c.size() == 1 && !wanted.count(out)) {
        const auto& next = g.node(c[0]);
        if (next.op_type() == "Relu") {
          po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
        } else if (next.op_type() == "Clip") {  // ReLU6
          po.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, FloatAttr(next, "min", -3.4e38f), FloatAttr(next, "max", 3.4e38f));
        }
        if (po.len() > 0) {
          fused.insert(c[0]);
          result = next.output(0);
        }
      }
      dnnl::primitive_attr attr;
      attr.set_post_ops(po);
      const memory::desc bias_md({wd[0]}, kF32, Tag::x);
      auto make = [&](const memory::desc& src, const memory::desc& dst) {
        dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src,
                                          memory::desc(wdims, kF32, Tag::any), bias_md, dst, {s[0], s[1]},
                                          {dil[0] - 1, dil[1] - 1}, {p[0], p[1]}, {p[2], p[3]});
        return dnnl::convolution_forward::primitive_desc(d, attr, eng);
      };
      // In the network's layout; a layer with no optimised kernel for it (the 3-channel first
      // layer: only the reference one, 2x slower than all the rest) gets its own layouts and
      // reorders around it.
      dnnl::convolution_forward::primitive_desc pd;
      try {
        pd = make(x->get_desc(), memory::desc(od, kF32, act));
      } catch (const dnnl::error&) {
      }
      if (!pd || std::string(pd.impl_info_str()).rfind("ref", 0) == 0)
        pd = make(memory::desc(xd, kF32, Tag::any), memory::desc(od, kF32, Tag::any));
      std::vector<float> w = Floats(wt);
      memory user_w({wdims, kF32, groups == 1 ? Tag::oihw : Tag::goihw}, eng, w.data()), weights(pd.weights_desc(), eng);
      dnnl::reorder(user_w, weights).execute(strm, user_w, weights);  // once, at load
      strm.wait();
      memory b(bias_md, eng);
      std::memcpy(b.get_data_handle(), bias.data(), bias.size() * sizeof(float));
      memory src = Reordered(*x, pd.src_desc()), dst(pd.dst_desc(), eng);
      steps.push_back({dnnl::convolution_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, dst}}});
      val[result] = dst.get_desc() == memory::desc(od, kF32, act) ? dst : Reordered(dst, memory::desc(od, kF32, act));
    } else if (op == "Relu" || op == "Clip") {
      auto x = in(0);
      if (!x.ok()) return x.status();
      if (op == "Clip" && n.input_size() > 1) return Unsupported("node " + n.name() + ": Clip with bounds as inputs");
      const bool relu = op == "Relu";
      dnnl::eltwise_forward::primitive_desc pd(
          {dnnl::prop_kind::forward_inference, relu ? dnnl::algorithm::eltwise_relu : dnnl::algorithm::eltwise_clip,
           x->get_desc(), relu ? 0.f : FloatAttr(n, "min", -3.4e38f), relu ? 0.f : FloatAttr(n, "max", 3.4e38f)},
          eng);
      memory dst(pd.dst_desc(), eng);
      steps.push_back({dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, *x}, {DNNL_ARG_DST, dst}}});
      val[out] = dst;
    } else if (op == "MaxPool" || op == "AveragePool") {
      auto x = in(0);
      if (!x.ok()) return x.status();
      const auto k = Ints(n, "kernel_shape", {}), s = Ints(n, "strides", {1, 1}), p = Ints(n, "pads", {0, 0, 0, 0});
      if (k.size() != 2 || s.size() != 2 || p.size() != 4 || Int(n, "ceil_mode", 0) != 0)
        return Unsupported("node " + n.name() + ": pooling attributes");
      const auto xd = x->get_desc().dims();
      const memory::dims od{xd[0], xd[1], (xd[2] + p[0] + p[2] - k[0]) / s[0] + 1, (xd[3] + p[1] + p[3] - k[1]) / s[1] + 1};
      const auto alg = op == "MaxPool" ? dnnl::algorithm::pooling_max
                       : Int(n, "count_include_pad", 0) ? dnnl::algorithm::pooling_avg_include_padding
                                                         : dnnl::algorithm::pooling_avg_exclude_padding;
      dnnl::pooling_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, alg, x->get_desc(), memory::desc(od, kF32, act),
                                                {s[0], s[1]}, {k[0], k[1]}, {p[0], p[1]}, {p[2], p[3]}},
                                               eng);
      memory dst(pd.dst_desc(), eng);
      steps.push_back({dnnl::pooling_forward(pd), {{DNNL_ARG_SRC, *x}, {DNNL_ARG_DST, dst}}});
      val[out] = dst;
    } else if (op == "Concat" || op == "Sum") {
      if (op == "Concat" && Int(n, "axis", 1) != 1) return Unsupported("node " + n.name() + ": concatenation off the channel axis");
      std::vector<memory> xs;
      std::vector<memory::desc> mds;
      for (int k = 0; k < n.input_size(); ++k) {
        auto x = in(k);
        if (!x.ok()) return x.status();
        xs.push_back(*x);
        mds.push_back(x->get_desc());
      }
      auto dims = mds[0].dims();
      if (op == "Concat")
        for (size_t k = 1; k < mds.size(); ++k) dims[1] += mds[k].dims()[1];
      memory dst;
      std::unordered_map<int, memory> args;
      if (op == "Concat") {
        dnnl::concat::primitive_desc pd(memory::desc(dims, kF32, act), 1, mds, eng);
        dst = memory(pd.dst_desc(), eng);
        steps.push_back({dnnl::concat(pd), {}});
      } else {
        dnnl::sum::primitive_desc pd(memory::desc(dims, kF32, act), std::vector<float>(mds.size(), 1.f), mds, eng);
        dst = memory(pd.dst_desc(), eng);
        steps.push_back({dnnl::sum(pd), {}});
      }
      for (size_t k = 0; k < xs.size(); ++k) steps.back().args[DNNL_ARG_MULTIPLE_SRC + int(k)] = xs[k];
      steps.back().args[DNNL_ARG_DST] = dst;
      val[out] = dst;
    } else {
      return Unsupported("op " + op + " (node " + n.name() + ")");
    }
  }
  for (const auto& name : outputs) {
    if (!val.count(name)) return Unsupported("the graph has no tensor " + name);
    const auto d = val[name].get_desc().dims();
    if (d.size() != 4) return Unsupported("output " + name + " is not a 4-D feature map");
    // Always a copy of our own in plain NCHW: the runs' results must not alias a working buffer.
    memory plain(memory::desc(d, kF32, Tag::nchw), eng);
    steps.push_back({dnnl::reorder(val[name], plain), {{DNNL_ARG_FROM, val[name]}, {DNNL_ARG_TO, plain}}});
    outs.push_back({plain, int(d[1]), int(d[2]), int(d[3])});
  }
  return Status::Ok();
}

DnnlNet::DnnlNet() : impl_(std::make_unique<Impl>()) {}
DnnlNet::~DnnlNet() = default;

const std::string& DnnlNet::layout() const { return impl_->layout; }

StatusOr<std::unique_ptr<DnnlNet>> DnnlNet::Load(const std::filesystem::path& onnx_path, int height, int width,
                                                 const std::vector<std::string>& outputs) {
  std::ifstream in(onnx_path, std::ios::binary);
  onnx::ModelProto model;
  if (!in || !model.ParseFromIstream(&in)) return Corrupt("cannot read the ONNX model " + onnx_path.string());
  auto net = std::unique_ptr<DnnlNet>(new DnnlNet());
  try {
    net->impl_->act = PreferredLayout(net->impl_->eng);
    net->impl_->layout = TagName(net->impl_->act);
    ZQ_RETURN_IF_ERROR(net->impl_->Build(model.graph(), height, width, outputs));
  } catch (const dnnl::error& e) {
    return Unsupported(std::string("oneDNN: ") + e.what());
  }
  return net;
}

StatusOr<std::vector<DnnlNet::Output>> DnnlNet::Run(const cv::Mat& blob) {
  std::lock_guard lock(mu_);
  auto& m = *impl_;
  const size_t bytes = m.input.get_desc().get_size();
  if (!blob.isContinuous() || blob.type() != CV_32F || blob.total() * sizeof(float) != bytes)
    return InvalidArgument("the input blob does not match the network's input size");
  std::memcpy(m.input.get_data_handle(), blob.ptr<float>(), bytes);
  try {
    for (auto& s : m.steps) s.prim.execute(m.strm, s.args);
    m.strm.wait();
  } catch (const dnnl::error& e) {
    return Internal(std::string("oneDNN: ") + e.what());
  }
  std::vector<Output> outs;
  for (const auto& o : m.outs)
    outs.push_back({cv::Mat(o.c, o.h * o.w, CV_32F, o.plain.get_data_handle()).clone(), o.c, o.h, o.w});
  return outs;
}

}  // namespace zeroqc
