#include <fstream>
#include <iostream>
#include <map>

#include "cli/commands.h"

namespace zeroqc::cli {
namespace {

// Demo layout: <product>_reference.jpg beside <product>_nok*.jpg, one folder.
struct Product {
  std::vector<std::filesystem::path> refs, qc;
};

std::map<std::string, Product> GroupProducts(const std::vector<std::filesystem::path>& files) {
  std::map<std::string, Product> out;
  for (const auto& f : files) {
    std::string stem = f.stem().string();
    auto cut = stem.rfind('_');
    if (cut == std::string::npos) continue;
    auto& p = out[stem.substr(0, cut)];
    (stem.substr(cut + 1) == "reference" ? p.refs : p.qc).push_back(f);
  }
  return out;
}

std::filesystem::path DefaultDemoDir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  for (auto d : {exe / ".." / "demo" / "aws-nova-samples", std::filesystem::path("demo/aws-nova-samples")})
    if (std::filesystem::is_directory(d)) return std::filesystem::weakly_canonical(d);
  return "demo/aws-nova-samples";
}

}  // namespace

void RegisterDemo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "inspect the bundled demo products (one reference each) and write results and overlays");
  struct Args {
    EngineFlags engine;
    std::string data, out = "demo-out";
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--data", args->data, "folder of <product>_reference.jpg and <product>_nok*.jpg (default: the bundled demo/)");
  cmd->add_option("--out", args->out, "where results.jsonl and overlays go");
  args->engine.Register(cmd);
  cmd->callback([args] {
    std::filesystem::path data = args->data.empty() ? DefaultDemoDir() : std::filesystem::path(args->data);
    auto files = ListImages(data);
    if (!files.ok()) {
      std::cerr << "zeroqc demo: " << files.status().message() << "\n";
      throw ExitStatus{kExitBadArguments};
    }
    std::filesystem::create_directories(args->out);
    auto jsonl_path = std::filesystem::path(args->out) / "results.jsonl";
    std::ofstream jsonl(jsonl_path);
    int rc = kExitOk;
    for (const auto& [name, product] : GroupProducts(*files)) {
      if (product.refs.empty() || product.qc.empty()) continue;
      auto opts = args->engine.Options(data);
      if (!opts.ok()) {
        std::cerr << "zeroqc demo: " << opts.status().message() << "\n";
        throw ExitStatus{kExitBadArguments};
      }
      auto engine = PatchEngine::Create(*opts, product.refs);
      if (!engine.ok()) {
        std::cerr << "zeroqc demo: " << name << ": " << engine.status().message() << "\n";
        throw ExitStatus{kExitBadArguments};
      }
      std::cerr << "== " << name << ": " << product.refs.size() << " reference(s), " << product.qc.size()
                << " QC image(s), threshold " << (*engine)->threshold() << "\n";
      std::vector<std::string> images;
      for (const auto& q : product.qc) images.push_back(q.string());
      images.push_back(product.refs.front().string());  // a good part, as a sanity check
      rc = std::max(rc, InspectImages(**engine, images, opts->limits, (std::filesystem::path(args->out) / "overlays").string(), &jsonl));
    }
    std::cerr << "results: " << jsonl_path.string() << "\noverlays: " << (std::filesystem::path(args->out) / "overlays").string()
              << "\n";
    if (rc != kExitOk) throw ExitStatus{rc};
  });
}

}  // namespace zeroqc::cli
