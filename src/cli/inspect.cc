#include <cstdio>
#include <iostream>
#include <mutex>
#include <opencv2/imgcodecs.hpp>
#include <optional>

#include "cli/commands.h"
#include "core/parallel.h"
#include "image/overlay.h"

namespace zeroqc::cli {

int InspectImages(Engine& engine, const std::vector<std::string>& images, const ImageLimits& limits,
                  const std::string& overlay_dir, std::ostream* jsonl, int jobs, size_t* nok) {
  if (!overlay_dir.empty()) std::filesystem::create_directories(overlay_dir);
  std::vector<std::optional<std::string>> lines(images.size());
  std::mutex mu;
  size_t printed = 0;
  bool failed = false;
  ParallelFor(images.size(), jobs, [&](size_t i) {
    const std::string& path = images[i];
    Image img;
    Inspection insp = InspectFile(engine, path, limits, &img);
    if (!overlay_dir.empty() && !img.bgr.empty()) {
      auto out = std::filesystem::path(overlay_dir) / (std::filesystem::path(path).stem().string() + "_overlay.jpg");
      cv::imwrite(out.string(), DrawOverlay(img.bgr, insp.heatmap, insp.result));
    }
    std::lock_guard lock(mu);
    failed = failed || insp.result.error.has_value();
    if (nok && insp.result.verdict == "NOK") ++*nok;
    lines[i] = ToJson(insp.result).dump();
    for (; printed < lines.size() && lines[printed]; ++printed) {  // stream in input order
      std::cout << *lines[printed] << std::endl;
      if (jsonl) *jsonl << *lines[printed] << "\n";
    }
  });
  return failed ? kExitImageFailed : kExitOk;
}

// Fewer parts than this are no sign either way.
constexpr size_t kWarnAfterParts = 8;

void RegisterInspect(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("inspect", "inspect QC images against reference images of good parts (JSON Lines on stdout)");
  struct Args {
    EngineFlags engine;
    std::string engine_name = "patch", refs, overlay;
    int jobs = 1;
    bool zero_shot = false;
    std::vector<std::string> images;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--engine", args->engine_name,
                  "patch (embedded, offline), vlm (a vision-language model) or cascade (patch screens, the model judges the uncertain parts) (default patch)")
      ->check(CLI::IsMember(EngineNames()));
  auto* refs = cmd->add_option("--refs", args->refs, "folder of reference images of good parts");
  cmd->add_flag("--zero-shot", args->zero_shot,
                "no references: the images judge each other as one batch (at least 8 images of one product, most of them good)")
      ->excludes(refs);
  cmd->add_option("--overlay", args->overlay, "write each image with heat map and boxes to this folder");
  cmd->add_option("--jobs", args->jobs, "images inspected at a time (parallel model requests for vlm) (default 1)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("images", args->images, "QC images")->required();
  args->engine.Register(cmd);
  cmd->callback([args] {
    auto fail = [](const std::string& m) {
      std::cerr << "zeroqc inspect: " << m << "\n";
      throw ExitStatus{kExitBadArguments};
    };
    if (!args->zero_shot && args->refs.empty()) fail("--refs DIR is required (or --zero-shot)");
    std::vector<std::filesystem::path> batch;
    if (args->zero_shot) {
      for (const auto& i : args->images) batch.push_back(i);
    } else {
      auto refs = ListImages(args->refs);
      if (!refs.ok()) fail("reference folder: " + refs.status().message());
      batch = *refs;
    }
    auto factory = MakeEngineFactory(args->engine_name, args->engine, args->refs, args->zero_shot);
    if (!factory.ok()) fail(factory.status().message());
    auto engine = (*factory)(batch);
    if (!engine.ok()) fail(engine.status().message());
    size_t nok = 0;
    int rc = InspectImages(**engine, args->images, args->engine.limits(), args->overlay, nullptr, args->jobs, &nok);
    // Most parts of a line are good: a run that rejects most of them says more about the references.
    if (!args->zero_shot && args->images.size() >= kWarnAfterParts && 2 * nok > args->images.size())
      std::fprintf(stderr,
                   "zeroqc inspect: warning: %zu of %zu parts are NOK. If most of them are good, the references miss how they "
                   "look: zeroqc refs check %s --parts FOLDER says which to add\n",
                   nok, args->images.size(), args->refs.c_str());
    if (rc != kExitOk) throw ExitStatus{rc};
  });
}

}  // namespace zeroqc::cli
