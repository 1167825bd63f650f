#include <iostream>

#include "cli/commands.h"
#include "features/tfjs_convert.h"
#include "features/torch_convert.h"

namespace zeroqc::cli {

void RegisterConvert(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert",
      "convert a backbone to ONNX: a Keras model in TF.js layers format (--model, --weights; see tools/export_tfjs.js) "
      "or a PyTorch checkpoint of a known architecture (--pytorch, --arch)");
  struct Args {
    std::string model_json, weights, pytorch, out;
    int size = 0;
    std::vector<std::string> outputs;
    std::string arch, prefix;
  };
  auto args = std::make_shared<Args>();
  auto* model = cmd->add_option("--model", args->model_json, "TF.js: model.json with modelTopology and weightsManifest")->check(CLI::ExistingFile);
  auto* weights = cmd->add_option("--weights", args->weights, "TF.js: weights.bin, the shards' bytes in manifest order")->check(CLI::ExistingFile);
  auto* pytorch = cmd->add_option("--pytorch", args->pytorch, "a PyTorch checkpoint (.pth: zip or legacy format); read without running any of its code")->check(CLI::ExistingFile);
  auto* arch = cmd->add_option("--arch", args->arch, "the checkpoint's architecture: efficientnet-lite0 ... efficientnet-lite4, resnet50, resnet101, resnet152");
  cmd->add_option("--prefix", args->prefix, "PyTorch: the network's names start with this in the checkpoint (e.g. features.)")->needs(pytorch);
  model->needs(weights)->excludes(pytorch);
  weights->needs(model);
  pytorch->needs(arch);
  arch->needs(pytorch);
  cmd->add_option("--out", args->out, "ONNX file to write")->required();
  cmd->add_option("--size", args->size, "input height and width in pixels (default: 299 for TF.js, the architecture's own for PyTorch)")->check(CLI::Range(32, 4096));
  cmd->add_option("--outputs", args->outputs,
                  "tensors to expose as outputs (default: the model's own). TF.js: layer names. "
                  "efficientnet-lite: stem, blockN, blockN_expand, stage1-stage7, head, logits; resnet: stem, layer1-layer4, logits");
  cmd->callback([args] {
    Status st;
    if (!args->pytorch.empty()) {
      TorchConvertOptions opt;
      opt.arch = args->arch;
      opt.prefix = args->prefix;
      opt.input_height = opt.input_width = args->size;
      opt.outputs = args->outputs;
      st = ConvertTorchToOnnx(args->pytorch, opt, args->out);
    } else if (!args->model_json.empty()) {
      TfjsConvertOptions opt;
      if (args->size) opt.input_height = opt.input_width = args->size;
      opt.outputs = args->outputs;
      st = ConvertTfjsToOnnx(args->model_json, args->weights, opt, args->out);
    } else {
      st = InvalidArgument("give --model and --weights (TF.js) or --pytorch and --arch (PyTorch)");
    }
    if (!st.ok()) {
      std::cerr << "zeroqc convert: " << st.message() << "\n";
      throw ExitStatus{kExitBadArguments};
    }
    std::cerr << "wrote " << args->out << "\n";
  });
}

}  // namespace zeroqc::cli
