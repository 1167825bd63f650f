// Writing the ONNX graphs that the converters produce: opset 10, NCHW, one input "input" of shape
// [1, 3, H, W], float initializers. Both converters (TF.js layers, PyTorch state dicts) use it, so
// their graphs look the same to oneDNN and to OpenCV DNN.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <onnx/onnx_pb.h>

#include "core/status.h"

namespace zeroqc {

using Shape = std::vector<int64_t>;

// TensorFlow's "same" padding along one axis: output = ceil(n / s), and the extra pixel, if any,
// goes at the end. Returns {before, after}.
std::pair<int64_t, int64_t> SamePads(int64_t n, int64_t k, int64_t s);

class OnnxGraph {
 public:
  explicit OnnxGraph(const std::string& name);

  void Input(const std::string& name, const Shape& dims);
  void Output(const std::string& name, const Shape& dims);
  void Initializer(const std::string& name, const Shape& dims, const std::vector<float>& data);
  onnx::NodeProto* Node(const std::string& op, const std::vector<std::string>& in, const std::string& out);

  static void Ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v);
  static void Float(onnx::NodeProto* n, const std::string& name, float v);
  static void Int(onnx::NodeProto* n, const std::string& name, int64_t v);

  Status Write(const std::filesystem::path& out) const;

 private:
  onnx::ModelProto model_;
  onnx::GraphProto* g_;
};

}  // namespace zeroqc
