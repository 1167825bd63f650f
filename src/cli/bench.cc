// zeroqc bench: the evaluation table of the reference design on a dataset in the MVTec layout.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include "bench/online.h"
#include "cli/progress.h"
#include "bench/report.h"
#include "bench/suite.h"
#include "bench/summary.h"
#include "cli/commands.h"

namespace zeroqc::cli {
namespace {

// A one-line progress bar on stderr; on a non-terminal (CI logs) a line per quarter instead.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled), tty_(isatty(STDERR_FILENO)) {}
  void operator()(const BenchProgress& p) {
    if (!enabled_) return;
    if (p.stage == "references") {
      start_ = std::chrono::steady_clock::now();
      quarter_ = -1;
      std::fprintf(stderr, "%sseed %d/%d: building the engine from the references...\n", tty_ ? "\r\033[K" : "", p.run + 1, p.runs);
      return;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = s > 0 ? p.done / s : 0;
    const double eta = rate > 0 ? (p.total - p.done) / rate : 0;
    constexpr int kWidth = 30;
    const int filled = int(kWidth * p.done / std::max<size_t>(1, p.total));
    if (tty_) {
      std::fprintf(stderr, "\r\033[Kseed %d/%d [%s%s] %zu/%zu  %.2f img/s  ETA %.0fs", p.run + 1, p.runs,
                   std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(), p.done, p.total, rate, eta);
      if (p.done == p.total) std::fputc('\n', stderr);
    } else if (int q = int(4 * p.done / std::max<size_t>(1, p.total)); q != quarter_) {
      quarter_ = q;
      std::fprintf(stderr, "seed %d/%d: %zu/%zu images, %.2f img/s\n", p.run + 1, p.runs, p.done, p.total, rate);
    }
  }

 private:
  bool enabled_, tty_;
  int quarter_ = -1;
  std::chrono::steady_clock::time_point start_;
};

// A line with more false rejects than this is not usable; a calibration gap above this is worth a
// fixed threshold.
constexpr double kWarnSpecificity = 0.8, kWarnGap = 0.15;

void PrintSummary(const nlohmann::json& s, const std::filesystem::path& out) {
  auto f = [](const nlohmann::json& v) { return v.is_number() ? v.get<double>() : std::nan(""); };
  std::printf("%-18s %s\n", "dataset", s["dataset"].get<std::string>().c_str());
  std::printf("%-18s %s\n", "engine", s["engine"].get<std::string>().c_str());
  std::printf("%-18s %zu of %zu, %d seed(s)\n", "references", s["shots"].get<size_t>(), s["pool"].get<size_t>(), s["seeds"].get<int>());
  for (const char* k : {"accuracy", "precision", "recall", "specificity", "f1", "balanced_accuracy", "auroc", "pixel_auroc", "pro", "calibration_gap"})
    std::printf("%-18s %.3f  (sd %.3f)\n", k, f(s[k]), f(s["spread"][k]));
  // What the numbers mean for a setup: most good parts rejected is the references' fault, not the parts'.
  if (const double spec = f(s["specificity"]); spec < kWarnSpecificity)
    std::printf("%-18s %.0f%% of the good parts were NOK: the references miss how good parts look (zeroqc refs check)\n",
                "warning", 100 * (1 - spec));
  if (const double gap = f(s["calibration_gap"]); gap > kWarnGap)
    std::printf("%-18s a threshold chosen on these parts would add %.2f balanced accuracy (zeroqc refs check --good --defective)\n",
                "warning", gap);
  const auto& l = s["latency_ms"];
  std::printf("%-18s p50 %.0f  p90 %.0f  p99 %.0f ms\n", "latency", f(l["p50"]), f(l["p90"]), f(l["p99"]));
  std::printf("%-18s %.2f images/s at %d job(s)\n", "throughput", f(s["throughput_ips"]), s["jobs"].get<int>());
  if (s.contains("types")) {
    const auto& t = s["types"];
    std::printf("%-18s %.3f  (sd %.3f; chance %.3f, %d example(s) per type)\n", "type accuracy", f(t["accuracy"]), f(t["accuracy_sd"]),
                f(t["chance"]), t["examples_per_type"].get<int>());
  }
  if (s.contains("cascade")) {
    const auto& c = s["cascade"];
    std::printf("%-18s %.1f%% of parts, %.2f requests and %.0f + %.0f tokens per part\n", "to the model",
                100 * f(c["share_to_model"]), f(c["requests_per_part"]), f(c["input_tokens_per_part"]), f(c["output_tokens_per_part"]));
    for (const auto& [route, x] : c["routes"].items())
      std::printf("  %-16s %5.1f%%  p50 %.0f  p90 %.0f  p99 %.0f ms\n", route.c_str(), 100 * f(x["share"]), f(x["latency_ms"]["p50"]),
                  f(x["latency_ms"]["p90"]), f(x["latency_ms"]["p99"]));
  }
  std::printf("%-18s %s\n\n", "report", (out / "report.html").c_str());
  std::fflush(stdout);
}

// --draw cover: each run's references chosen as refs suggest chooses them (ChooseReferences), from a
// seeded three quarters of the pool standing in for a day's batch, so that seeds differ as days do.
// Each pool photo is described once, with the backbone the engine uses.
BenchOptions::Draw CoverDraw(const EngineFlags& flags) {
  auto looks = std::make_shared<std::map<std::filesystem::path, ImageLook>>();
  return [flags, looks](const std::vector<std::filesystem::path>& pool, size_t k, uint64_t seed)
             -> StatusOr<std::vector<std::filesystem::path>> {
    const auto batch = DrawShots(pool, std::max(k, (3 * pool.size() + 3) / 4), seed);
    std::vector<std::filesystem::path> missing;
    for (const auto& p : batch)
      if (!looks->count(p)) missing.push_back(p);
    EngineFlags quiet = flags;
    quiet.quiet = true;
    auto described = DescribeBatch(missing, quiet, "the pool");
    if (!described.ok()) return described.status();
    for (auto& l : *described) looks->emplace(l.path, std::move(l));
    std::vector<const ImageLook*> day;
    for (const auto& p : batch)
      if (auto it = looks->find(p); it != looks->end()) day.push_back(&it->second);
    const auto choice = ChooseReferences(day, k);
    std::vector<std::filesystem::path> refs;
    for (size_t i : choice.chosen) refs.push_back(day[i]->path);
    std::sort(refs.begin(), refs.end());
    return refs;
  };
}

// A set's name in the suite: its folder's name.
std::string SetName(const std::filesystem::path& root) {
  return root.filename().empty() ? root.parent_path().filename().string() : root.filename().string();
}

}  // namespace

void RegisterBench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "evaluate an engine on a dataset in the MVTec layout (metrics.json, results.jsonl, report.html)");
  struct Args {
    EngineFlags engine;
    std::vector<std::string> datasets;
    std::string engine_name = "patch", out = "bench-out";
    std::optional<size_t> shots;
    int seeds = 1, jobs = 1;
    uint64_t seed = 1;
    bool no_progress = false;
    int type_shots = 0;
    bool online = false;
    OnlineOptions on;
    std::optional<double> defect_share;
    std::string draw = "random";
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("datasets", args->datasets,
                  "one or more folders with train/good, test/<type> and optionally ground_truth/<type>; several make a suite "
                  "(one subfolder of --out per set, suite.json, suite.md and a suite report.html)")->required();
  cmd->add_option("--engine", args->engine_name, "engine to evaluate (default patch)")->check(CLI::IsMember(EngineNames()));
  cmd->add_option("--shots", args->shots,
                  "references drawn from train/good per run (default: all of them); 0: zero-shot, the test images judge "
                  "each other as one batch");
  cmd->add_option("--draw", args->draw,
                  "how --shots references are drawn from train/good: random, or cover (as refs suggest picks them, from a seeded three "
                  "quarters of the pool) (default random)")
      ->check(CLI::IsMember({"random", "cover"}));
  cmd->add_option("--seeds", args->seeds, "runs, each with its own draw of references (default 1)")->check(CLI::Range(1, 1000));
  cmd->add_option("--seed", args->seed, "seed of the first run; run i uses seed + i (default 1)");
  cmd->add_option("--jobs", args->jobs, "images inspected in parallel (default 1)")->check(CLI::Range(1, 256));
  cmd->add_option("--out", args->out, "output folder (default bench-out)");
  cmd->add_flag("--no-progress", args->no_progress, "no progress on stderr (same as --quiet)");
  cmd->add_option("--type-shots", args->type_shots,
                  "name defect types from N example images per type (drawn per seed; the rest are named and scored)")
      ->check(CLI::Range(1, 1000));
  cmd->add_flag("--online", args->online,
                "simulate a line: start from --shots references, stream the rest of train/good; every NOK is reviewed with the truth "
                "and each false alarm becomes a reference; the test set is scored every --eval-every parts (metrics.json: online)");
  cmd->add_option("--stream", args->on.stream, "--online: parts streamed (default: all pool images not drawn as references)");
  cmd->add_option("--eval-every", args->on.eval_every, "--online: parts between two scorings of the test set (default 5)")->check(CLI::Range(1, 1000));
  cmd->add_option("--defect-rate", args->on.defect_rate,
                  "--online: share of defective parts in the stream, taken from test defects (which are then not scored) (default 0)")
      ->check(CLI::Range(0.0, 0.5));
  cmd->add_option("--auto-margin", args->on.auto_margin, "--online: the auto rule: OK parts scoring below margin x threshold join the references")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--auto-max", args->on.auto_max, "--online: at most this many parts added by the auto rule (default 0)")->check(CLI::Range(0, 100000));
  cmd->add_option("--defect-share", args->defect_share,
                  "score every good test image and a draw of the defective ones (seeded by --seed) so that they are this "
                  "share of the test set, as on a line (default: the whole test folder)")
      ->excludes("--online");
  args->engine.Register(cmd);
  cmd->callback([args] {
    // Every set is checked before the first run: a typo in the last folder must not cost an hour.
    std::vector<Dataset> datasets;
    for (const auto& path : args->datasets) {
      auto d = LoadDataset(path);
      const size_t before = d.ok() ? d->samples.size() : 0;
      if (d.ok() && args->defect_share) d = WithDefectShare(*d, *args->defect_share, args->seed);
      if (!d.ok()) {
        std::cerr << "zeroqc bench: " << d.status().message() << "\n";
        throw ExitStatus{kExitBadArguments};
      }
      if (args->defect_share) {
        const auto nok = std::count_if(d->samples.begin(), d->samples.end(), [](const Sample& s) { return s.nok; });
        std::cerr << "zeroqc bench: " << path << ": " << d->samples.size() - nok << " good and " << nok << " defective test images (of "
                  << before << ")\n";
      }
      datasets.push_back(std::move(*d));
    }
    std::set<std::string> names;
    for (const auto& d : datasets)
      if (!names.insert(SetName(d.root)).second) {
        std::cerr << "zeroqc bench: two datasets are named '" << SetName(d.root) << "': their results would share a folder\n";
        throw ExitStatus{kExitBadArguments};
      }
    const bool zero_shot = args->shots && *args->shots == 0;
    const bool suite = datasets.size() > 1;
    const std::filesystem::path out_root = args->out;
    std::vector<SuiteEntry> entries;
    int errors = 0;
    args->engine.share_descriptors = true;  // every seed reuses the descriptors of images already seen
    args->engine.quiet = args->engine.quiet || args->no_progress;
    for (const auto& dataset : datasets) {
      auto factory = MakeEngineFactory(args->engine_name, args->engine, dataset.root / "train" / "good", zero_shot);
      if (!factory.ok()) {
        std::cerr << "zeroqc bench: " << factory.status().message() << "\n";
        throw ExitStatus{kExitBadArguments};
      }
      if (args->online) {
        OnlineOptions on = args->on;
        on.shots = args->shots.value_or(0);
        on.seeds = args->seeds;
        on.first_seed = args->seed;
        on.limits.max_pixels = args->engine.max_pixels;
        on.progress = StderrProgress(args->engine.quiet);
        auto runs = RunOnline(dataset, *factory, on);
        if (!runs.ok()) {
          std::cerr << "zeroqc bench: " << SetName(dataset.root) << ": " << runs.status().message() << "\n";
          throw ExitStatus{kExitBadArguments};
        }
        const nlohmann::json online = OnlineJson(*runs, on);
        const std::filesystem::path out = suite ? out_root / SetName(dataset.root) : out_root;
        std::filesystem::create_directories(out);
        std::ofstream(out / "metrics.json") << nlohmann::json({{"dataset", SetName(dataset.root)}, {"engine", args->engine_name},
                                                               {"online", online}}).dump(2)
                                            << "\n";
        std::printf("%s: online from %zu reference(s), %d seed(s)\n%8s %16s %12s %12s\n", SetName(dataset.root).c_str(), on.shots, on.seeds,
                    "parts", "accuracy", "references", "corrected");
        for (const auto& p : online["curve"])
          std::printf("%8d %9.3f ± %.3f %12.1f %12.1f\n", p["parts"].get<int>(), p["accuracy"]["mean"].get<double>(),
                      p["accuracy"]["std"].get<double>(), p["references"]["mean"].get<double>(), p["false_alarms"]["mean"].get<double>());
        std::printf("reviews (NOK verdicts looked at) %.1f, false alarms corrected %.1f, defects escaped %.1f; %s\n",
                    online["reviews"]["mean"].get<double>(), online["false_alarms"]["mean"].get<double>(),
                    online["escaped_defects"]["mean"].get<double>(), (out / "metrics.json").c_str());
        continue;
      }
      BenchOptions opt;
      opt.shots = zero_shot ? 0 : args->shots.value_or(0);
      opt.zero_shot = zero_shot;
      opt.seeds = args->seeds;
      opt.first_seed = args->seed;
      opt.jobs = args->jobs;
      opt.stream = args->engine.line_window > 0;
      opt.warmup = size_t(args->engine.line_window);
      opt.limits.max_pixels = args->engine.max_pixels;
      opt.progress = ProgressBar(!args->engine.quiet);
      opt.type_shots = args->type_shots;
      if (args->draw == "cover") opt.draw = CoverDraw(args->engine);
      auto runs = RunBench(dataset, *factory, opt);
      if (!runs.ok()) {
        std::cerr << "zeroqc bench: " << SetName(dataset.root) << ": " << runs.status().message() << "\n";
        throw ExitStatus{kExitBadArguments};
      }
      BenchConfig cfg{args->engine_name, zero_shot ? 0 : runs->front().references.size(), args->seeds, args->jobs};
      auto summary = Summarize(dataset, *runs, cfg);
      summary["draw"] = args->draw;
      const std::filesystem::path out = suite ? out_root / SetName(dataset.root) : out_root;
      std::filesystem::create_directories(out);
      std::ofstream(out / "metrics.json") << summary.dump(2) << "\n";
      std::ofstream jsonl(out / "results.jsonl");
      for (const auto& run : *runs)
        for (const auto& rec : run.records) jsonl << RecordJson(dataset, run, rec).dump() << "\n";
      ReportOptions ro;
      ro.limits = opt.limits;
      std::ofstream(out / "report.html") << ReportHtml(summary, dataset, *runs, ro);
      PrintSummary(summary, out);
      errors += summary["errors"].get<int>();
      entries.push_back({SetName(dataset.root), std::move(summary)});
    }
    if (suite) {
      auto s = SummarizeSuite(entries);
      std::ofstream(out_root / "suite.json") << s.dump(2) << "\n";
      const std::string table = SuiteMarkdown(s);
      std::ofstream(out_root / "suite.md") << table;
      std::ofstream(out_root / "report.html") << SuiteReportHtml(s, entries);
      std::printf("suite of %zu sets (%s)\n%s\n", entries.size(), (out_root / "report.html").c_str(), table.c_str());
    }
    if (errors > 0) throw ExitStatus{kExitImageFailed};
  });
}

}  // namespace zeroqc::cli
