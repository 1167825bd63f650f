// The zeroqc subcommands: thin layers over the library.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "bench/runner.h"
#include "engines/patch/patch_engine.h"
#include "engines/patch/reference_choice.h"
#include "vlm/provider.h"

namespace zeroqc::cli {

// Exit statuses shared by all subcommands.
constexpr int kExitOk = 0;
constexpr int kExitBadArguments = 2;
constexpr int kExitImageFailed = 3;

// Thrown by a subcommand's callback to end the program with `code`.
struct ExitStatus {
  int code;
};

// Engine flags common to inspect and demo; defaults resolved next to the executable.
struct EngineFlags {
  std::string backbone;  // a name (BackboneNames) or a spec path; empty: $ZEROQC_BACKBONE, else kDefaultBackbone
  bool share_descriptors = false;  // not a flag: bench sets it so that seeds describe each image once
  std::string cache_dir;
  bool no_cache = false;
  double threshold = 0;  // 0: calibrated
  double sigmas = -1;    // < 0: default
  int bank_size = 0;     // 0: default
  int zero_shot_peers = 0;  // 0: default
  int line_window = 0;      // 0: off
  bool foreground = false;  // mask the background (PatchEngineOptions::foreground_mask)
  int rotations = 1;        // PatchEngineOptions::reference_rotations
  int64_t max_pixels = ImageLimits{}.max_pixels;
  bool quiet = false;  // no progress on stderr while an engine builds
  // cascade engine: the band (0: from the references) and whether NOK parts are explained too
  double cascade_low = 0, cascade_high = 0;
  bool explain_nok = false;
  int model_references = 4;  // references sent with each model request (every one costs tokens)
  // vlm engine
  std::string provider = "bedrock", profile = "generic", box_format;
  ProviderOptions vlm;
  // The flags a subcommand takes: each shows only what it uses (demo runs the embedded engine on
  // single images, so neither the batch nor the model flags are its own).
  enum Parts { kPatchFlags = 1, kBatchFlags = 2, kModelFlags = 4, kAllFlags = 7 };
  void Register(CLI::App* app, int parts = kAllFlags);
  // Options for a reference folder; `refs_dir/zeroqc.json` may set "threshold" or "threshold_sigmas".
  // The backbone asked for: --backbone, else $ZEROQC_BACKBONE, else the default (zero-shot:
  // kDefaultZeroShotBackbone). A name or a spec path, as ResolveBackbone takes it.
  std::string ChosenBackbone(bool zero_shot = false) const;
  // `zero_shot`: the backbone defaults to kDefaultZeroShotBackbone.
  StatusOr<PatchEngineOptions> Options(const std::filesystem::path& refs_dir, bool zero_shot = false) const;
  ImageLimits limits() const;
};

// The backbones shipped in models/ beside the binary, by name (lite2 is models/lite2.json;
// "inception" names inception_v3.json), and the one used when none is named.
// Zero-shot batches judge each other with InceptionV3: on the suite's test folders lite2 ranked
// worse there (docs/BENCHMARKS.md, backbones).
inline constexpr const char* kDefaultBackbone = "lite2";
// serve's line window: a service sees a line's stream, where the window lifts the few-reference
// verdicts most (docs/BENCHMARKS.md, the line window at a line's defect share). One-off runs
// (inspect, bench) keep it off unless asked.
inline constexpr int kServeLineWindow = 32;
inline constexpr const char* kDefaultZeroShotBackbone = "inception";
std::vector<std::string> BackboneNames();
// A name from BackboneNames, or a path to a spec JSON (anything with a '/' or ending in .json).
// kNotFound names the choices.
StatusOr<std::filesystem::path> ResolveBackbone(const std::string& name_or_path);

// Describes photos with the backbone `flags` choose, for choosing or checking references
// (engines/patch/reference_choice.h); a progress line on stderr headed `what` unless flags.quiet.
StatusOr<std::vector<ImageLook>> DescribeBatch(const std::vector<std::filesystem::path>& paths, const EngineFlags& flags,
                                               const std::string& what);

// A product's "threshold" (> 0) and "threshold_sigmas" (>= 0) from its settings object (a
// zeroqc.json, or a product of the service); `where` names it in errors. Absent keys stay unset.
struct ThresholdSettings {
  std::optional<double> threshold, sigmas;
};
StatusOr<ThresholdSettings> ReadThresholdSettings(const nlohmann::json& settings, const std::string& where);

// The engines `--engine` can name, and a factory for one of them configured from the flags;
// `config_dir` is the product folder whose zeroqc.json may override settings.
std::vector<std::string> EngineNames();
// With `zero_shot`, the factory's images are an unlabelled batch that judges itself (patch only).
StatusOr<EngineFactory> MakeEngineFactory(const std::string& engine, const EngineFlags& flags,
                                          const std::filesystem::path& config_dir, bool zero_shot = false);

// Runs the engine over images, writes JSON Lines to stdout (and to `jsonl` if set) and overlays
// to `overlay_dir` if set, `jobs` images at a time, lines in input order. Returns the exit status;
// `nok`, when given, receives how many images were judged NOK.
int InspectImages(Engine& engine, const std::vector<std::string>& images, const ImageLimits& limits,
                  const std::string& overlay_dir, std::ostream* jsonl = nullptr, int jobs = 1, size_t* nok = nullptr);

void RegisterInspect(CLI::App& app);
void RegisterConvert(CLI::App& app);
void RegisterDemo(CLI::App& app);
void RegisterBench(CLI::App& app);
void RegisterServe(CLI::App& app);
void RegisterRefs(CLI::App& app);
void RegisterRefsCheck(CLI::App* refs);  // zeroqc refs check, beside refs suggest
void RegisterKeys(CLI::App& app);

}  // namespace zeroqc::cli
