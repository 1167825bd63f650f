#include "features/onnx_graph.h"

#include <algorithm>
#include <fstream>

namespace zeroqc {

std::pair<int64_t, int64_t> SamePads(int64_t n, int64_t k, int64_t s) {
  int64_t out = (n + s - 1) / s;
  int64_t total = std::max<int64_t>((out - 1) * s + k - n, 0);
  return {total / 2, total - total / 2};
}

OnnxGraph::OnnxGraph(const std::string& name) {
  model_.set_ir_version(7);
  model_.set_producer_name("zeroqc-convert");
  auto* opset = model_.add_opset_import();
  opset->set_domain("");
  // Opset 10: every node here means the same as in 11, and Clip (ReLU6) still takes its bounds
  // as attributes, the form OpenCV 4.6's importer reads.
  opset->set_version(10);
  g_ = model_.mutable_graph();
  g_->set_name(name);
}

namespace {
void Declare(onnx::ValueInfoProto* vi, const std::string& name, const Shape& dims) {
  vi->set_name(name);
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx::TensorProto::FLOAT);
  for (auto d : dims) tt->mutable_shape()->add_dim()->set_dim_value(d);
}
}  // namespace

void OnnxGraph::Input(const std::string& name, const Shape& dims) { Declare(g_->add_input(), name, dims); }
void OnnxGraph::Output(const std::string& name, const Shape& dims) { Declare(g_->add_output(), name, dims); }

void OnnxGraph::Initializer(const std::string& name, const Shape& dims, const std::vector<float>& data) {
  auto* t = g_->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  for (auto d : dims) t->add_dims(d);
  t->set_raw_data(std::string(reinterpret_cast<const char*>(data.data()), data.size() * sizeof(float)));
}

onnx::NodeProto* OnnxGraph::Node(const std::string& op, const std::vector<std::string>& in, const std::string& out) {
  auto* n = g_->add_node();
  n->set_op_type(op);
  n->set_name(out + "_" + op);
  for (const auto& i : in) n->add_input(i);
  n->add_output(out);
  return n;
}

void OnnxGraph::Ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (auto x : v) a->add_ints(x);
}

void OnnxGraph::Float(onnx::NodeProto* n, const std::string& name, float v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}

void OnnxGraph::Int(onnx::NodeProto* n, const std::string& name, int64_t v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

Status OnnxGraph::Write(const std::filesystem::path& out_onnx) const {
  std::filesystem::create_directories(out_onnx.parent_path().empty() ? "." : out_onnx.parent_path());
  std::ofstream out(out_onnx, std::ios::binary);
  if (!out || !model_.SerializeToOstream(&out)) return IoError("cannot write " + out_onnx.string());
  return Status::Ok();
}

}  // namespace zeroqc
