#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>

#include <opencv2/imgcodecs.hpp>

#include "cli/commands.h"
#include "image/overlay.h"

namespace zeroqc::cli {
namespace {

std::filesystem::path ExeDir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::current_path() : p.parent_path();
}

std::filesystem::path DefaultCacheDir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::filesystem::path(x) / "zeroqc";
  if (const char* h = std::getenv("HOME"); h && *h) return std::filesystem::path(h) / ".cache" / "zeroqc";
  return std::filesystem::temp_directory_path() / "zeroqc-cache";
}

}  // namespace

void EngineFlags::Register(CLI::App* app) {
  app->add_option("--max-pixels", max_pixels, "refuse images with more pixels than this (default 100000000)")->check(CLI::PositiveNumber);
  app->add_option("--backbone", backbone, "backbone spec JSON (default: models/inception_v3.json beside the binary, or $ZEROQC_BACKBONE)");
  app->add_option("--cache", cache_dir, "memory-bank cache folder (default: ~/.cache/zeroqc)");
  app->add_flag("--no-cache", no_cache, "always rebuild the memory bank");
  app->add_option("--threshold", threshold, "fixed OK/NOK threshold instead of the calibrated one")->check(CLI::PositiveNumber);
  app->add_option("--sigmas", sigmas, "calibration: threshold = median + SIGMAS * robust spread of leave-one-out scores (default 2)")->check(CLI::NonNegativeNumber);
  app->add_option("--bank-size", bank_size, "patches kept in the memory bank; more references are subsampled by a coreset (default 6400)")->check(CLI::Range(64, 10'000'000));
}

StatusOr<PatchEngineOptions> EngineFlags::Options(const std::filesystem::path& refs_dir) const {
  PatchEngineOptions o;
  if (!backbone.empty()) o.backbone_spec = backbone;
  else if (const char* env = std::getenv("ZEROQC_BACKBONE"); env && *env) o.backbone_spec = env;
  else o.backbone_spec = ExeDir() / "models" / "inception_v3.json";
  if (!no_cache) o.cache_dir = cache_dir.empty() ? DefaultCacheDir() : std::filesystem::path(cache_dir);
  if (bank_size > 0) o.max_bank_rows = bank_size;
  o.limits.max_pixels = max_pixels;
  if (sigmas >= 0) o.threshold_sigmas = sigmas;
  auto product = refs_dir / "zeroqc.json";  // per-product overrides beside the references
  if (std::filesystem::exists(product)) {
    std::ifstream in(product);
    auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return InvalidArgument(product.string() + " is not a JSON object");
    try {
      if (j.contains("threshold_sigmas")) o.threshold_sigmas = j["threshold_sigmas"].get<double>();
      if (j.contains("threshold")) o.threshold = j["threshold"].get<double>();
    } catch (const nlohmann::json::exception&) {
      return InvalidArgument(product.string() + ": threshold and threshold_sigmas must be numbers");
    }
    if ((o.threshold && *o.threshold <= 0) || o.threshold_sigmas < 0)
      return InvalidArgument(product.string() + ": threshold must be > 0 and threshold_sigmas >= 0");
  }
  if (threshold > 0) o.threshold = threshold;
  return o;
}

ImageLimits EngineFlags::limits() const {
  ImageLimits l;
  l.max_pixels = max_pixels;
  return l;
}

std::vector<std::string> EngineNames() { return {"patch"}; }

StatusOr<EngineFactory> MakeEngineFactory(const std::string& engine, const EngineFlags& flags,
                                          const std::filesystem::path& config_dir) {
  if (engine != "patch") return InvalidArgument("unknown engine '" + engine + "'");
  auto opts = flags.Options(config_dir);
  if (!opts.ok()) return opts.status();
  return EngineFactory([o = *opts](const std::vector<std::filesystem::path>& refs) -> StatusOr<std::unique_ptr<Engine>> {
    auto e = PatchEngine::Create(o, refs);
    if (!e.ok()) return e.status();
    return std::unique_ptr<Engine>(std::move(*e));
  });
}

int InspectImages(Engine& engine, const std::vector<std::string>& images, const ImageLimits& limits,
                  const std::string& overlay_dir, std::ostream* jsonl) {
  int status = kExitOk;
  if (!overlay_dir.empty()) std::filesystem::create_directories(overlay_dir);
  for (const auto& path : images) {
    auto img = LoadImage(path, limits);
    Inspection insp;
    if (!img.ok()) {
      insp.result.engine = engine.name();
      insp.result.image_path = path;
      insp.result.error = img.status().message();
    } else {
      insp = engine.Inspect(*img);
    }
    if (insp.result.error) status = kExitImageFailed;
    std::string line = ToJson(insp.result).dump();
    std::cout << line << std::endl;
    if (jsonl) *jsonl << line << "\n";
    if (!overlay_dir.empty() && img.ok()) {
      auto out = std::filesystem::path(overlay_dir) / (std::filesystem::path(path).stem().string() + "_overlay.jpg");
      cv::imwrite(out.string(), DrawOverlay(img->bgr, insp.heatmap, insp.result));
    }
  }
  return status;
}

void RegisterInspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "inspect QC images against reference images of good parts (JSON Lines on stdout)");
  struct Args {
    EngineFlags engine;
    std::string refs, overlay;
    std::vector<std::string> images;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--refs", args->refs, "folder of reference images of good parts")->required();
  cmd->add_option("--overlay", args->overlay, "write each image with heat map and boxes to this folder");
  cmd->add_option("images", args->images, "QC images")->required();
  args->engine.Register(cmd);
  cmd->callback([args] {
    auto refs = ListImages(args->refs);
    if (!refs.ok()) {
      std::cerr << "zeroqc inspect: reference folder: " << refs.status().message() << "\n";
      throw ExitStatus{kExitBadArguments};
    }
    auto opts = args->engine.Options(args->refs);
    if (!opts.ok()) {
      std::cerr << "zeroqc inspect: " << opts.status().message() << "\n";
      throw ExitStatus{kExitBadArguments};
    }
    auto engine = PatchEngine::Create(*opts, *refs);
    if (!engine.ok()) {
      std::cerr << "zeroqc inspect: " << engine.status().message() << "\n";
      throw ExitStatus{kExitBadArguments};
    }
    int rc = InspectImages(**engine, args->images, opts->limits, args->overlay);
    if (rc != kExitOk) throw ExitStatus{rc};
  });
}

}  // namespace zeroqc::cli
