// Runs a converted backbone's ONNX graph with oneDNN primitives: convolutions (grouped and depthwise
// too) with their bias and a following ReLU or ReLU6 (Clip) fused, pooling, sums and concatenation,
// all in oneDNN's blocked activation layout (nChw8c on AVX2, nChw16c on AVX-512). OpenCV DNN runs
// the same graph 2-3x further from the machine's FMA peak. Only the ops the feature backbones use
// are covered; Load names the first one it cannot run, and the caller falls back to OpenCV DNN.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "core/status.h"

namespace zeroqc {

class DnnlNet {
 public:
  // The graph of `onnx` for a 1 x 3 x height x width input, reading the tensors `outputs`.
  // kUnsupported: an op, attribute or layout this runtime does not handle (the message says which).
  static StatusOr<std::unique_ptr<DnnlNet>> Load(const std::filesystem::path& onnx, int height, int width,
                                                 const std::vector<std::string>& outputs);
  ~DnnlNet();

  // `blob`: the input as a continuous 1 x 3 x H x W CV_32F blob. Returns, per output, a C x (H*W)
  // CV_32F matrix and its C, H, W. Thread-safe (one run at a time; oneDNN uses every core).
  struct Output {
    cv::Mat data;
    int channels, height, width;
  };
  StatusOr<std::vector<Output>> Run(const cv::Mat& blob);

  // The activation layout chosen for this machine, e.g. "nChw8c".
  const std::string& layout() const;

 private:
  DnnlNet();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::mutex mu_;
};

}  // namespace zeroqc
