// Converts a PyTorch checkpoint of a known architecture into the same kind of ONNX graph as the
// TF.js converter, so that oneDNN runs it as a feature backbone.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/status.h"
#include "features/torch_checkpoint.h"

namespace zeroqc {

struct TorchConvertOptions {
  // "efficientnet-lite0" ... "efficientnet-lite4": the Lite family (lukemelas' EfficientNet-PyTorch
  // names: _conv_stem, _blocks.N._expand_conv / _depthwise_conv / _project_conv with _bn0-2,
  // _conv_head, _fc), MobileNet-style blocks with ReLU6 and no squeeze-excitation.
  // "resnet50", "resnet101", "resnet152": torchvision's ResNets (conv1, bn1, layer1-4.N.conv1-3 /
  // bn1-3 / downsample, fc); a research backbone, never a default.
  std::string arch;
  // What comes before the network's own names in the state dict, when it sits inside a larger
  // model's ("features." for resmem's ResNet-152). Tensors outside it are ignored.
  std::string prefix;
  int input_height = 0, input_width = 0;  // 0: the architecture's own resolution
  // Tensors exposed as graph outputs, in this order; the graph stops at the deepest one.
  //   stem, block0 ... blockN-1 (each block's output), blockK_expand (its expansion, after ReLU6),
  //   stage1 ... stage7 (the last block of each stage: strides 2, 4, 8, 16, 16, 32, 32), head
  //   (1280 channels, stride 32), logits (the 1000 ImageNet classes, before softmax).
  // ResNet: stem (after the max pool), layer1 ... layer4 (strides 4, 8, 16, 32), logits.
  // Empty: logits.
  std::vector<std::string> outputs;
};

// The architecture names ConvertTorchToOnnx accepts.
std::vector<std::string> TorchArchitectures();

// kInvalidArgument: an unknown architecture or output name; kCorrupt: the state dict does not match
// the architecture (the message names the first tensor that differs).
Status ConvertStateDictToOnnx(const StateDict& weights, const TorchConvertOptions& options,
                              const std::filesystem::path& out_onnx);
Status ConvertTorchToOnnx(const std::filesystem::path& checkpoint, const TorchConvertOptions& options,
                          const std::filesystem::path& out_onnx);

}  // namespace zeroqc
