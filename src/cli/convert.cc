#include <iostream>

#include "cli/commands.h"
#include "features/tfjs_convert.h"

namespace zeroqc::cli {

void RegisterConvert(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "convert a Keras model in TF.js layers format (see tools/export_tfjs.js) to ONNX");
  struct Args {
    std::string model_json, weights, out;
    TfjsConvertOptions opt;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--model", args->model_json, "model.json with modelTopology and weightsManifest")->required()->check(CLI::ExistingFile);
  cmd->add_option("--weights", args->weights, "weights.bin: the shards' bytes in manifest order")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", args->out, "ONNX file to write")->required();
  cmd->add_option("--size", args->opt.input_height, "input height and width in pixels")->check(CLI::Range(32, 4096));
  cmd->add_option("--outputs", args->opt.outputs, "layers to expose as outputs (default: the model's own)");
  cmd->callback([args] {
    args->opt.input_width = args->opt.input_height;
    Status st = ConvertTfjsToOnnx(args->model_json, args->weights, args->opt, args->out);
    if (!st.ok()) {
      std::cerr << "zeroqc convert: " << st.message() << "\n";
      throw ExitStatus{kExitBadArguments};
    }
    std::cerr << "wrote " << args->out << "\n";
  });
}

}  // namespace zeroqc::cli
