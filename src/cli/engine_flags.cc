// Engine configuration from flags, environment and per-product files, and the engine factory.
#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <fstream>

#include "cli/commands.h"
#include "cli/progress.h"
#include "engines/cascade/cascade_engine.h"
#include "engines/vlm/vlm_engine.h"

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

std::filesystem::path ModelsDir() { return ExeDir() / "models"; }

}  // namespace

std::vector<std::string> BackboneNames() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(ModelsDir(), ec)) {
    if (e.path().extension() != ".json") continue;
    std::string n = e.path().stem().string();
    out.push_back(n == "inception_v3" ? "inception" : n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

StatusOr<std::filesystem::path> ResolveBackbone(const std::string& name) {
  if (name.find('/') != std::string::npos || (name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0))
    return std::filesystem::path(name);
  const auto names = BackboneNames();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    return NotFound("no backbone named '" + name + "' (" + (known.empty() ? "none installed: run ./setup.sh" : "installed: " + known) +
                    "; or give a spec file path)");
  }
  return ModelsDir() / ((name == "inception" ? std::string("inception_v3") : name) + ".json");
}

StatusOr<std::vector<ImageLook>> DescribeBatch(const std::vector<std::filesystem::path>& paths, const EngineFlags& flags,
                                               const std::string& what) {
  auto spec_path = ResolveBackbone(flags.ChosenBackbone());
  if (!spec_path.ok()) return spec_path.status();
  auto spec = BackboneSpec::Load(*spec_path);
  if (!spec.ok()) return spec.status();
  auto net = Backbone::Open(*spec);
  if (!net.ok()) return net.status();
  auto looks = DescribeLooks(**net, paths, flags.limits(), [&](size_t done, size_t total) {
    if (!flags.quiet) std::fprintf(stderr, "\rdescribing %s: %zu/%zu%s", what.c_str(), done, total, done == total ? "\n" : "");
  });
  return looks;
}

void EngineFlags::Register(CLI::App* app, int parts) {
  app->add_flag("--quiet", quiet, "no progress lines on stderr while the memory bank builds");
  app->add_option("--max-pixels", max_pixels, "refuse images with more pixels than this (default 100000000)")->check(CLI::PositiveNumber);
  app->add_option("--backbone", backbone,
                  std::string("feature backbone: lite2, lite0, lite1, inception, or a spec JSON path (default ") + kDefaultBackbone +
                      ", zero-shot " + kDefaultZeroShotBackbone + "; or $ZEROQC_BACKBONE; README: backbones)");
  app->add_option("--cache", cache_dir, "memory-bank cache folder (default: ~/.cache/zeroqc)");
  app->add_flag("--no-cache", no_cache, "always rebuild the memory bank");
  app->add_option("--threshold", threshold, "fixed OK/NOK threshold instead of the calibrated one")->check(CLI::PositiveNumber);
  app->add_option("--sigmas", sigmas, "calibration strictness: robust spreads above the good parts' scores (default 2; README: --sigmas)")->check(CLI::NonNegativeNumber);
  app->add_option("--bank-size", bank_size, "patches kept in the memory bank; more references are subsampled by a coreset (default 6400)")->check(CLI::Range(64, 10'000'000));
  if (parts & kBatchFlags) {
    app->add_option("--peers", zero_shot_peers, "zero-shot: other images of the batch each image is compared with (default 32; more is slower and steadier)")->check(CLI::Range(2, 100000));
    app->add_option("--line-window", line_window,
                    "judge each part by the last N parts inspected as well as the references (0: off, else 7-128; README: the line window)");
  }
  app->add_flag("--foreground", foreground,
                "score the part only, not the background around it (off: it hides defects of a product that fills the frame; README: the foreground mask)");
  app->add_option("--rotations", rotations,
                  "also describe every reference turned by 360/N degree steps, for parts that lie at any angle (1: off, 4 or 8; README: parts at any angle)")
      ->check(CLI::IsMember({1, 4, 8}));
  if (!(parts & kModelFlags)) return;
  auto* cg = app->add_option_group("cascade engine", "the embedded engine screens, the model judges the uncertain parts (--engine cascade)");
  cg->add_option("--low", cascade_low, "parts scoring under LOW x threshold are OK without the model (default: from the references)")->check(CLI::PositiveNumber);
  cg->add_option("--high", cascade_high, "parts scoring over HIGH x threshold are NOK without the model (default: from the references)")->check(CLI::PositiveNumber);
  cg->add_flag("--explain-nok", explain_nok, "send every NOK part to the model too, for names, colours and reasons");
  cg->add_option("--model-refs", model_references, "references sent to the model with each request, evenly spread over the folder (default 4)")
      ->check(CLI::Range(1, 64));
  auto* g = app->add_option_group("vlm engine", "vision-language model settings (--engine vlm or cascade)");
  g->add_option("--provider", provider, "bedrock, openai (any OpenAI-compatible server) or ollama (default bedrock)")->check(CLI::IsMember(ProviderNames()));
  g->add_option("--model", vlm.model, "model id, e.g. us.amazon.nova-pro-v1:0, gpt-4o, qwen2.5vl:7b");
  g->add_option("--base-url", vlm.base_url, "endpoint (default: the provider's public one; ollama: http://127.0.0.1:11434)");
  g->add_option("--region", vlm.region, "AWS region for bedrock (default: AWS_REGION, AWS_DEFAULT_REGION or ~/.aws/config)");
  g->add_option("--profile", profile, "prompt profile: generic, toothbrush or a JSON file (default generic)");
  g->add_option("--box-format", box_format, "the model's box convention: norm1000, norm1000-yx or pixels (default: per provider)");
  g->add_option("--api-key-env", vlm.api_key_env, "openai: environment variable holding the API key (default OPENAI_API_KEY)");
  g->add_option("--timeout", vlm.timeout_ms, "per-request timeout in ms (default: 120000 for bedrock and openai, 600000 for ollama)")->check(CLI::Range(100, 3'600'000));
  g->add_option("--attempts", vlm.max_attempts, "attempts per request for throttling, 5xx and timeouts (default 3)")->check(CLI::Range(1, 10));
  g->add_option("--backoff", vlm.backoff_ms, "first retry delay in ms, doubled per attempt with jitter (default 500)")->check(CLI::Range(0, 60000));
}

std::string EngineFlags::ChosenBackbone(bool zero_shot) const {
  if (!backbone.empty()) return backbone;
  if (const char* env = std::getenv("ZEROQC_BACKBONE"); env && *env) return env;
  return zero_shot ? kDefaultZeroShotBackbone : kDefaultBackbone;
}

StatusOr<PatchEngineOptions> EngineFlags::Options(const std::filesystem::path& refs_dir, bool zero_shot) const {
  PatchEngineOptions o;
  auto spec = ResolveBackbone(ChosenBackbone(zero_shot));
  if (!spec.ok()) return spec.status();
  o.backbone_spec = *spec;
  if (!no_cache) o.cache_dir = cache_dir.empty() ? DefaultCacheDir() : std::filesystem::path(cache_dir);
  if (bank_size > 0) o.max_bank_rows = bank_size;
  if (zero_shot_peers > 0) o.zero_shot_peers = zero_shot_peers;
  o.line_window = line_window;
  o.foreground_mask = foreground;
  o.reference_rotations = rotations;
  o.limits.max_pixels = max_pixels;
  o.progress = StderrProgress(quiet);
  auto product = refs_dir / "zeroqc.json";  // per-product overrides beside the references
  if (!refs_dir.empty() && std::filesystem::exists(product)) {
    std::ifstream in(product);
    auto t = ReadThresholdSettings(nlohmann::json::parse(in, nullptr, false), product.string());
    if (!t.ok()) return t.status();
    if (t->sigmas) o.threshold_sigmas = *t->sigmas;
    if (t->threshold) o.threshold = *t->threshold;
  }
  // Flags win over the product file.
  if (sigmas >= 0) o.threshold_sigmas = sigmas;
  if (threshold > 0) o.threshold = threshold;
  return o;
}

StatusOr<ThresholdSettings> ReadThresholdSettings(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) return InvalidArgument(where + " is not a JSON object");
  ThresholdSettings t;
  try {
    if (j.contains("threshold_sigmas")) t.sigmas = j["threshold_sigmas"].get<double>();
    if (j.contains("threshold")) t.threshold = j["threshold"].get<double>();
  } catch (const nlohmann::json::exception&) {
    return InvalidArgument(where + ": threshold and threshold_sigmas must be numbers");
  }
  if ((t.threshold && *t.threshold <= 0) || (t.sigmas && *t.sigmas < 0))
    return InvalidArgument(where + ": threshold must be > 0 and threshold_sigmas >= 0");
  return t;
}

ImageLimits EngineFlags::limits() const {
  ImageLimits l;
  l.max_pixels = max_pixels;
  return l;
}

std::vector<std::string> EngineNames() { return {"patch", "vlm", "cascade"}; }

namespace {

StatusOr<EngineFactory> PatchFactory(const EngineFlags& flags, const std::filesystem::path& config_dir, bool zero_shot) {
  auto opts = flags.Options(config_dir, zero_shot);
  if (!opts.ok()) return opts.status();
  opts->zero_shot = zero_shot;
  if (flags.share_descriptors) opts->descriptors = std::make_shared<DescriptorCache>();
  return EngineFactory([o = *opts](const std::vector<std::filesystem::path>& refs) -> StatusOr<std::unique_ptr<Engine>> {
    auto e = PatchEngine::Create(o, refs);
    if (!e.ok()) return e.status();
    return std::unique_ptr<Engine>(std::move(*e));
  });
}

StatusOr<VlmEngineOptions> VlmOptions(const EngineFlags& flags) {
  VlmEngineOptions o;
  auto profile = LoadProfile(flags.profile);
  if (!profile.ok()) return profile.status();
  o.profile = *profile;
  if (!flags.box_format.empty()) {
    auto b = ParseBoxFormat(flags.box_format);
    if (!b.ok()) return b.status();
    o.box_format = *b;
  }
  o.model = flags.vlm.model;
  o.limits = flags.limits();
  auto probe = MakeProvider(flags.provider, flags.vlm);  // fail now on missing model or credentials
  if (!probe.ok()) return probe.status();
  return o;
}

StatusOr<std::unique_ptr<VlmEngine>> MakeVlmEngine(const EngineFlags& flags, const VlmEngineOptions& o,
                                                   const std::vector<std::filesystem::path>& refs) {
  auto provider = MakeProvider(flags.provider, flags.vlm);
  if (!provider.ok()) return provider.status();
  return VlmEngine::Create(std::move(*provider), o, refs);
}

StatusOr<EngineFactory> VlmFactory(const EngineFlags& flags) {
  auto o = VlmOptions(flags);
  if (!o.ok()) return o.status();
  return EngineFactory([o = *o, flags](const std::vector<std::filesystem::path>& refs) -> StatusOr<std::unique_ptr<Engine>> {
    auto e = MakeVlmEngine(flags, o, refs);
    if (!e.ok()) return e.status();
    return std::unique_ptr<Engine>(std::move(*e));
  });
}

// The embedded engine and the model engine on the same references, behind one.
StatusOr<EngineFactory> CascadeFactory(const EngineFlags& flags, const std::filesystem::path& config_dir) {
  auto screen = PatchFactory(flags, config_dir, false);
  if (!screen.ok()) return screen.status();
  auto o = VlmOptions(flags);
  if (!o.ok()) return o.status();
  CascadeOptions c;
  c.low = flags.cascade_low, c.high = flags.cascade_high, c.explain_nok = flags.explain_nok;
  return EngineFactory([screen = *screen, o = *o, flags, c](const std::vector<std::filesystem::path>& refs)
                           -> StatusOr<std::unique_ptr<Engine>> {
    auto s = screen(refs);
    if (!s.ok()) return s.status();
    // The screen uses every reference; the model a few of them, evenly spread: each image it is
    // sent costs tokens on every request.
    std::vector<std::filesystem::path> few;
    const size_t m = std::min(refs.size(), size_t(flags.model_references));
    for (size_t i = 0; i < m; ++i) few.push_back(refs[i * refs.size() / m]);
    auto j = MakeVlmEngine(flags, o, few);
    if (!j.ok()) return j.status();
    auto e = CascadeEngine::Create(std::move(*s), std::move(*j), c);
    if (!e.ok()) return e.status();
    return std::unique_ptr<Engine>(std::move(*e));
  });
}

}  // namespace

StatusOr<EngineFactory> MakeEngineFactory(const std::string& engine, const EngineFlags& flags,
                                          const std::filesystem::path& config_dir, bool zero_shot) {
  if (engine == "patch") return PatchFactory(flags, config_dir, zero_shot);
  if (zero_shot) return InvalidArgument("zero-shot (--shots 0) needs the patch engine");
  if (engine == "vlm") return VlmFactory(flags);
  if (engine == "cascade") return CascadeFactory(flags, config_dir);
  return InvalidArgument("unknown engine '" + engine + "': use patch, vlm or cascade");
}

}  // namespace zeroqc::cli
