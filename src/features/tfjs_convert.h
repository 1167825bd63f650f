// Converts a Keras model saved in TF.js "layers" format into an ONNX graph that OpenCV DNN runs.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/status.h"

namespace zeroqc {

struct TfjsConvertOptions {
  int input_height = 299;  // ONNX input is static: OpenCV 4.6's importer wants fixed shapes
  int input_width = 299;
  // Layer names exposed as graph outputs, in this order. Empty: the model's own outputs.
  // Layers nothing requested depends on are dropped, so naming only conv blocks yields a
  // fully convolutional feature extractor without the classifier head.
  std::vector<std::string> outputs;
  bool fold_batchnorm = true;  // fold BatchNormalization into the preceding convolution
};

// Reads model.json ({modelTopology, weightsManifest}) and weights.bin (the shards' bytes in
// manifest order, as written by tools/export_tfjs.js) and writes an ONNX file (opset 10, NCHW,
// input "input" of shape [1,3,H,W]). Supported layers: InputLayer, Conv2D, DepthwiseConv2D,
// ZeroPadding2D (before convolutions only), BatchNormalization, Activation, ReLU (and ReLU6),
// Dense, Dropout, Flatten, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Concatenate and
// Add; anything else is refused with the layer's name.
Status ConvertTfjsToOnnx(const std::filesystem::path& model_json, const std::filesystem::path& weights_bin,
                         const TfjsConvertOptions& options, const std::filesystem::path& out_onnx);

}  // namespace zeroqc
