// A feature backbone: an ONNX model run by oneDNN (DnnlNet) or, for graphs it does not cover, by
// OpenCV DNN, described by a small JSON spec.
#pragma once

#include <array>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>

#include "core/status.h"
#include "features/dnnl_net.h"

namespace zeroqc {

// Example (models/inception_v3.json):
// {"name": "inception_v3-nsfwjs", "model": "inception_v3_features.onnx", "input_width": 416,
//  "input_height": 416, "mean": [0,0,0], "std": [1,1,1], "layers": ["mixed2", "mixed7"]}
// Pixels are RGB scaled to [0,1], then (x - mean) / std per channel. "model" is relative to the spec.
// Optional "runtime": "auto" (default: oneDNN, else OpenCV DNN with a warning), "onednn" or
// "opencv"; the environment variable ZEROQC_BACKBONE_RUNTIME overrides it (benchmarks, checks).
// A composite spec, {"name": ..., "backbones": ["inception_v3.json", "lite2.json"]}, runs each
// part on the image and reads all their layers (the first part's are the finest and set the grid
// and the map's size).
struct BackboneSpec {
  std::string name;
  std::filesystem::path model;
  int input_width = 0, input_height = 0;
  std::array<float, 3> mean{0, 0, 0}, std{1, 1, 1};
  std::vector<std::string> layers;  // feature layers to read, finest first
  std::string runtime = "auto";
  std::vector<BackboneSpec> parts;  // a composite's backbones; then model is empty

  static StatusOr<BackboneSpec> Load(const std::filesystem::path& json_path);
};

// A feature map of one layer: C planes of H x W, CV_32F, stored as a C x (H*W) matrix.
struct FeatureMap {
  cv::Mat data;
  int channels = 0, height = 0, width = 0;
};

class Backbone {
 public:
  static StatusOr<std::unique_ptr<Backbone>> Open(const BackboneSpec& spec);

  // Resizes the BGR image to the input size and returns one map per spec layer. Thread-safe.
  StatusOr<std::vector<FeatureMap>> Extract(const cv::Mat& bgr);

  const BackboneSpec& spec() const { return spec_; }
  // "onednn (nChw8c)" or "opencv": what runs the graph.
  const std::string& runtime() const { return runtime_; }
  // Identifies weights and spec, for cache keys: SHA-256 hex of the model file plus the spec.
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  BackboneSpec spec_;
  std::string fingerprint_, runtime_;
  std::vector<std::unique_ptr<Backbone>> parts_;  // a composite's; then neither net runs
  std::unique_ptr<DnnlNet> dnnl_;  // else net_
  cv::dnn::Net net_;
  std::mutex mu_;  // cv::dnn::Net::forward is not reentrant
};

}  // namespace zeroqc
