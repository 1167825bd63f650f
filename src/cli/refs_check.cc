// zeroqc refs check: before a product judges its first part, tells whether its references will do,
// and if not, what to add. Four references that were all blue or red brushes rejected every yellow
// good brush without a word; checked against a day's parts (--parts), the yellow ones stand out
// together as parts unlike any reference, and the verdict says to add references like them.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <numeric>

#include "bench/metrics.h"
#include "cli/commands.h"

namespace zeroqc::cli {
namespace {

// Suite means of image AUROC by references per product (7 products of ../shared/datasets, lite2,
// docs/BENCHMARKS.md): what a user can expect before checking on their own parts.
struct SuiteMark {
  int references;
  double auroc;
};
constexpr SuiteMark kSuite[] = {{1, 0.78}, {4, 0.81}, {16, 0.86}};
// Below this many references a setup is not ready unless parts show that it works.
constexpr int kFewReferences = 4;
// A reference whose leave-one-out score is over the threshold and this many times the references'
// median is unlike all the others: a defective part among them, or a variant shown only once.
constexpr size_t kListed = 8;  // files named in one reason

struct Part {
  std::filesystem::path path;
  double score = 0;
  bool nok = false, error = false;
  std::string message;
};

struct Args {
  EngineFlags engine;
  std::string refs, parts, good, defective;
  double defect_share = 0.1;
  bool json = false;
};

std::string Names(const std::vector<std::string>& files) {
  std::string s;
  for (size_t i = 0; i < files.size() && i < kListed; ++i) s += (i ? ", " : "") + files[i];
  if (files.size() > kListed) s += " and " + std::to_string(files.size() - kListed) + " more";
  return s;
}

std::string Fixed(double v, int digits = 3) {
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

// Inspects each image of `dir` with `engine`; the folder must hold images.
StatusOr<std::vector<Part>> Judge(Engine& engine, const std::string& dir, const ImageLimits& limits) {
  auto images = ListImages(dir);
  if (!images.ok()) return images.status();
  if (images->empty()) return InvalidArgument(dir + " holds no images");
  std::vector<Part> parts;
  for (const auto& p : *images) {
    const Inspection i = InspectFile(engine, p, limits);
    Part part{p, i.result.score, i.result.verdict == "NOK", i.result.error.has_value(), i.result.error.value_or("")};
    parts.push_back(part);
  }
  return parts;
}

// The files of `parts` that are NOK, highest score first.
std::vector<std::string> Rejected(std::vector<Part> parts) {
  std::stable_sort(parts.begin(), parts.end(), [](const Part& a, const Part& b) { return a.score > b.score; });
  std::vector<std::string> out;
  for (const auto& p : parts)
    if (p.nok && !p.error) out.push_back(p.path.filename().string() + " (" + Fixed(p.score) + ")");
  return out;
}

class Check {
 public:
  explicit Check(const Args& a) : a_(a) {}

  int Run() {
    auto refs = ListImages(a_.refs);
    if (!refs.ok()) Fail("reference folder: " + refs.status().message());
    if (refs->empty()) Fail(a_.refs + " holds no images: add photos of good parts");
    auto factory = MakeEngineFactory("patch", a_.engine, a_.refs);
    if (!factory.ok()) Fail(factory.status().message());
    auto engine = (*factory)(*refs);
    if (!engine.ok()) Fail(engine.status().message());
    const nlohmann::json cal = (*engine)->Calibration();
    threshold_ = cal.value("threshold", 0.0);
    fixed_ = cal.value("fixed", false);
    CheckReferences(*refs, cal);
    if (!a_.parts.empty()) CheckParts(**engine);
    if (!a_.good.empty() || !a_.defective.empty()) CheckLabelled(**engine);
    const bool evidence = !a_.parts.empty() || !a_.good.empty() || !a_.defective.empty();
    const int k = int(refs->size());
    if (k < kFewReferences && !evidence)
      Block("add references like these",
            std::to_string(k) + (k == 1 ? " reference" : " references") + ": " + SuiteText() + ". Add photos of good parts, one for each variant the line makes (colour, position, lighting), or show that these do with --parts DIR");
    else if (!evidence)
      notes_.push_back("not checked against parts: add --parts DIR (a day's photos, most of them good) to see whether the references cover the line");
    Print();
    return blocking_.empty() ? kExitOk : 1;
  }

 private:
  [[noreturn]] static void Fail(const std::string& m) {
    std::cerr << "zeroqc refs check: " << m << "\n";
    throw ExitStatus{kExitBadArguments};
  }
  void Block(const std::string& verdict, const std::string& why) {
    if (verdict_.empty()) verdict_ = verdict;
    blocking_.push_back(why);
  }
  static std::string SuiteText() {
    std::string s = "on the development suite a product's defects are ranked at mean image AUROC";
    for (const auto& m : kSuite) s += (m.references == 1 ? " " : ", ") + Fixed(m.auroc, 2) + " from " + std::to_string(m.references);
    return s + " references (docs/BENCHMARKS.md)";
  }

  // Leave-one-out: each reference against the others, and the look-alike groups among them.
  void CheckReferences(const std::vector<std::filesystem::path>& refs, const nlohmann::json& cal) {
    auto looks = DescribeBatch(refs, a_.engine, "the references");
    if (!looks.ok()) Fail(looks.status().message());
    std::vector<std::vector<float>> descriptors;
    for (const auto& l : *looks) descriptors.push_back(l.descriptor);
    ref_looks_ = descriptors;
    const auto groups = LookAlikeGroups(descriptors);
    std::vector<int> group_of(looks->size(), 0);
    for (size_t g = 0; g < groups.size(); ++g)
      for (size_t i : groups[g]) group_of[i] = int(g);
    std::vector<double> loo;
    if (refs.size() >= 2 && cal.contains("loo_scores")) loo = cal["loo_scores"].get<std::vector<double>>();
    double median = 0;
    const std::vector<bool> unlike = ::zeroqc::UnlikeReferences(loo, threshold_, &median);
    std::vector<std::string> outliers;
    for (size_t i = 0; i < refs.size(); ++i) {
      nlohmann::json r = {{"file", refs[i].filename().string()}, {"group", i < group_of.size() ? group_of[i] + 1 : 0}};
      if (i < loo.size() && loo.size() == refs.size()) {
        const bool outlier = unlike[i];
        r["loo_score"] = loo[i];
        r["outlier"] = outlier;
        if (outlier) outliers.push_back(refs[i].filename().string() + " (" + Fixed(loo[i]) + ")");
      }
      references_.push_back(r);
    }
    if (!outliers.empty())
      Block("references disagree",
            "unlike the other references (leave-one-out score over the threshold " + Fixed(threshold_) + " and " + Fixed(kOutlierRatio, 1) +
                "x their median " + Fixed(median) + "): " + Names(outliers) +
                ". If it is defective, remove it; if it is a variant, add more photos like it");
    groups_ = groups.size();
    if (groups.size() > 1) {
      std::string sizes;
      for (const auto& g : groups) sizes += (sizes.empty() ? "" : ", ") + std::to_string(g.size());
      notes_.push_back("the references fall into " + std::to_string(groups.size()) + " look-alike groups (" + sizes +
                       " photos): each variant needs references of its own");
    }
  }

  // A day's unlabelled parts, most of them good: more NOK than a line makes means the references miss
  // how good parts look.
  void CheckParts(Engine& engine) {
    auto parts = Judge(engine, a_.parts, a_.engine.limits());
    if (!parts.ok()) Fail("--parts: " + parts.status().message());
    Record("parts", *parts);
    const auto nok = Rejected(*parts);
    const double share = double(nok.size()) / parts->size();
    if (share > a_.defect_share) {
      Block("add references like these",
            std::to_string(nok.size()) + " of " + std::to_string(parts->size()) + " parts (" + Fixed(100 * share, 0) +
                "%) are NOK against the threshold " + Fixed(threshold_) + ", more than the " + Fixed(100 * a_.defect_share, 0) +
                "% defective a line makes (--defect-share). If they are good, add references like them; least like any "
                "reference first: " + Names(UnlikeReferences(*parts)));
    } else {
      notes_.push_back(std::to_string(nok.size()) + " of " + std::to_string(parts->size()) + " parts NOK" +
                       (nok.empty() ? "" : ": " + Names(nok)));
    }
  }

  // The NOK parts, those that look least like any reference first (by image descriptor): a variant
  // the references lack comes before parts that are merely close calls. Each with its look-alike
  // count among the NOK parts.
  std::vector<std::string> UnlikeReferences(const std::vector<Part>& parts) const {
    std::vector<std::filesystem::path> paths;
    for (const auto& p : parts)
      if (p.nok && !p.error) paths.push_back(p.path);
    EngineFlags quiet = a_.engine;
    quiet.quiet = true;
    auto looks = DescribeBatch(paths, quiet, "");
    if (!looks.ok()) Fail(looks.status().message());
    std::vector<std::pair<double, std::string>> far;
    for (const auto& l : *looks) {
      double d = std::numeric_limits<double>::infinity();
      for (const auto& r : ref_looks_) d = std::min(d, LookDistance(l.descriptor, r));
      const auto& p = *std::find_if(parts.begin(), parts.end(), [&](const Part& q) { return q.path == l.path; });
      far.emplace_back(d, l.path.filename().string() + " (" + Fixed(p.score) + ")");
    }
    std::stable_sort(far.begin(), far.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<std::string> out;
    for (const auto& f : far) out.push_back(f.second);
    return out;
  }

  // Known good and known defective parts: the confusion matrix, and the threshold that would
  // separate them best.
  void CheckLabelled(Engine& engine) {
    std::vector<Part> good, bad;
    if (!a_.good.empty()) {
      auto g = Judge(engine, a_.good, a_.engine.limits());
      if (!g.ok()) Fail("--good: " + g.status().message());
      good = *g;
      Record("good", good);
    }
    if (!a_.defective.empty()) {
      auto d = Judge(engine, a_.defective, a_.engine.limits());
      if (!d.ok()) Fail("--defective: " + d.status().message());
      bad = *d;
      Record("defective", bad);
    }
    Confusion c;
    std::vector<double> scores;
    std::vector<bool> is_nok;
    std::vector<std::string> missed;
    for (const auto& p : good) c.Add(false, p.nok), scores.push_back(p.score), is_nok.push_back(false);
    for (const auto& p : bad) {
      c.Add(true, p.nok), scores.push_back(p.score), is_nok.push_back(true);
      if (!p.nok) missed.push_back(p.path.filename().string() + " (" + Fixed(p.score) + ")");
    }
    confusion_ = {{"tp", c.tp}, {"fn", c.fn}, {"tn", c.tn}, {"fp", c.fp}};
    const auto rejected = Rejected(good);
    const auto best = BestThreshold(scores, is_nok);
    if (!rejected.empty() && best.balanced_accuracy >= 0.999)
      Block("set the threshold", std::to_string(rejected.size()) + " of " + std::to_string(good.size()) + " good parts are NOK (" +
                                     Names(rejected) + ") and " + std::to_string(missed.size()) + " defective parts pass against the threshold " +
                                     Fixed(threshold_) + "; a threshold of " + Fixed(best.threshold) +
                                     " separates every part given: set it (\"threshold\" in zeroqc.json, or on the page), or add references like them");
    else if (!rejected.empty())
      Block("add references like these", std::to_string(rejected.size()) + " of " + std::to_string(good.size()) +
                                              " good parts are NOK against the threshold " + Fixed(threshold_) +
                                              ": add references like them: " + Names(rejected));
    if (!std::isnan(best.threshold)) {
      best_ = {{"threshold", best.threshold}, {"balanced_accuracy", best.balanced_accuracy}, {"auroc", Auroc(scores, is_nok)}};
      if (!missed.empty() && rejected.empty()) {
        if (best.balanced_accuracy >= 0.999)
          Block("set the threshold", std::to_string(missed.size()) + " of " + std::to_string(bad.size()) +
                                         " defective parts pass (" + Names(missed) + "); a threshold of " + Fixed(best.threshold) +
                                         " separates every part given: set it (\"threshold\" in zeroqc.json, or on the page)");
        else
          Block("the engine misses these defects",
                std::to_string(missed.size()) + " of " + std::to_string(bad.size()) + " defective parts pass: " + Names(missed) +
                    ". No threshold separates the parts given (best balanced accuracy " + Fixed(best.balanced_accuracy, 2) +
                    " at " + Fixed(best.threshold) + "): add references, or see README: what the engine can see");
      }
    } else if (!missed.empty()) {
      Block("the engine misses these defects",
            std::to_string(missed.size()) + " of " + std::to_string(bad.size()) + " defective parts pass: " + Names(missed));
    }
  }

  void Record(const std::string& set, const std::vector<Part>& parts) {
    for (const auto& p : parts) {
      nlohmann::json j = {{"set", set}, {"file", p.path.filename().string()}, {"score", p.score}, {"verdict", p.nok ? "NOK" : "OK"}};
      if (p.error) j["verdict"] = "error", j["error"] = p.message;
      if (p.error) notes_.push_back(p.path.filename().string() + " could not be judged: " + p.message);
      parts_.push_back(j);
    }
  }

  void Print() const {
    const std::string verdict = blocking_.empty() ? "ready" : verdict_;
    if (a_.json) {
      nlohmann::json j = {{"verdict", verdict},     {"ready", blocking_.empty()}, {"reasons", blocking_}, {"notes", notes_},
                          {"threshold", threshold_}, {"fixed_threshold", fixed_}, {"references", references_},
                          {"groups", groups_},       {"parts", parts_}};
      if (!confusion_.is_null()) j["confusion"] = confusion_;
      if (!best_.is_null()) j["best_threshold"] = best_;
      std::cout << j.dump(2) << "\n";
      return;
    }
    std::printf("verdict: %s\n", verdict.c_str());
    for (const auto& r : blocking_) std::printf("  - %s\n", r.c_str());
    for (const auto& n : notes_) std::printf("  note: %s\n", n.c_str());
    std::printf("threshold %.3f (%s), %zu reference%s:\n", threshold_, fixed_ ? "fixed" : "calibrated from the references",
                references_.size(), references_.size() == 1 ? "" : "s");
    for (const auto& r : references_) {
      std::printf("  %-32s group %d", r["file"].get<std::string>().c_str(), r["group"].get<int>());
      if (r.contains("loo_score"))
        std::printf("  leave-one-out %.3f%s", r["loo_score"].get<double>(), r["outlier"].get<bool>() ? "  unlike the others" : "");
      std::printf("\n");
    }
    if (!confusion_.is_null())
      std::printf("defective parts: %d caught, %d missed; good parts: %d passed, %d rejected\n", confusion_["tp"].get<int>(),
                  confusion_["fn"].get<int>(), confusion_["tn"].get<int>(), confusion_["fp"].get<int>());
    if (!best_.is_null())
      std::printf("best threshold for these parts: %.3f (balanced accuracy %.2f, AUROC %.2f)\n", best_["threshold"].get<double>(),
                  best_["balanced_accuracy"].get<double>(), best_["auroc"].get<double>());
  }

  const Args& a_;
  std::vector<std::vector<float>> ref_looks_;
  double threshold_ = 0;
  bool fixed_ = false;
  size_t groups_ = 1;
  std::string verdict_;
  std::vector<std::string> blocking_, notes_;
  nlohmann::json references_ = nlohmann::json::array(), parts_ = nlohmann::json::array(), confusion_, best_;
};

}  // namespace

void RegisterRefsCheck(CLI::App* refs) {
  auto* cmd = refs->add_subcommand(
      "check", "tell whether a reference folder will do before parts are judged: a verdict, its reasons, exit 0 when ready and 1 when not");
  auto args = std::make_shared<Args>();
  cmd->add_option("dir", args->refs, "reference folder (photos of good parts, and its zeroqc.json if any)")->required();
  cmd->add_option("--parts", args->parts, "a day's photos of the product, most of them good: do the references cover them?");
  cmd->add_option("--good", args->good, "photos of parts known to be good: none should be NOK");
  cmd->add_option("--defective", args->defective, "photos of parts known to be defective: each should be NOK");
  cmd->add_option("--defect-share", args->defect_share,
                  "the share of --parts that may be defective before the references are blamed (default 0.1)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--json", args->json, "the verdict, reasons and every score as JSON on stdout");
  cmd->add_flag("--quiet", args->engine.quiet, "no progress lines on stderr");
  cmd->add_option("--backbone", args->engine.backbone, std::string("feature backbone (default ") + kDefaultBackbone + ")");
  cmd->add_option("--max-pixels", args->engine.max_pixels, "refuse images with more pixels than this (default 100000000)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--cache", args->engine.cache_dir, "memory-bank cache folder (default: ~/.cache/zeroqc)");
  cmd->callback([args] {
    if (args->json) args->engine.quiet = true;
    throw ExitStatus{Check(*args).Run()};
  });
}

}  // namespace zeroqc::cli
