#include "bench/online.h"

#include <cmath>

#include "bench/metrics.h"

namespace zeroqc {
namespace {

struct Part {
  std::filesystem::path image;
  bool nok;
};

// Accuracy and balanced accuracy of `engine` on the held-out samples.
OnlinePoint Score(Engine& engine, const std::vector<const Sample*>& test, const ImageLimits& limits) {
  Confusion c;
  OnlinePoint p;
  for (const Sample* s : test) {
    auto r = InspectFile(engine, s->image, limits);
    p.threshold = r.result.threshold;
    c.Add(s->nok, r.result.error.has_value() || r.result.verdict == "NOK");
  }
  const Classification m = Classify(c);
  p.accuracy = m.accuracy, p.balanced_accuracy = m.balanced_accuracy;
  return p;
}

}  // namespace

StatusOr<std::vector<OnlineRun>> RunOnline(const Dataset& dataset, const EngineFactory& factory, const OnlineOptions& o) {
  if (o.shots == 0 || o.shots >= dataset.pool.size())
    return InvalidArgument("--online needs --shots K with 1 <= K < " + std::to_string(dataset.pool.size()) + " (the pool's size): the rest streams");
  std::vector<OnlineRun> runs;
  for (int k = 0; k < o.seeds; ++k) {
    OnlineRun run;
    run.seed = o.first_seed + uint64_t(k);
    auto refs = DrawShots(dataset.pool, o.shots, run.seed);
    std::vector<Part> stream;
    for (const auto& p : dataset.pool)
      if (std::find(refs.begin(), refs.end(), p) == refs.end()) stream.push_back({p, false});
    SeededShuffle(stream, run.seed * 7919 + 17);
    if (o.stream > 0 && o.stream < stream.size()) stream.resize(o.stream);
    // Defective parts for the stream come out of the test set, which then scores without them.
    std::vector<const Sample*> defects, test;
    for (const auto& s : dataset.samples) (s.nok ? defects : test).push_back(&s);
    SeededShuffle(defects, (run.seed + 1000) * 7919 + 17);
    const size_t n_bad = o.defect_rate > 0 ? std::min(defects.size() / 2, size_t(std::lround(stream.size() * o.defect_rate / (1 - std::min(o.defect_rate, 0.9))))) : 0;
    for (size_t i = 0; i < defects.size(); ++i) {
      if (i < n_bad) stream.push_back({defects[i]->image, true});
      else test.push_back(defects[i]);
    }
    SeededShuffle(stream, (run.seed + 2000) * 7919 + 17);
    run.test_images = test.size();
    run.stream_defects = int(n_bad);

    auto made = factory(refs);
    if (!made.ok()) return Status(made.status().code(), "seed " + std::to_string(run.seed) + ": " + made.status().message());
    std::shared_ptr<Engine> engine = std::move(*made);
    size_t references = refs.size();
    auto point = [&](size_t parts) {
      OnlinePoint p = Score(*engine, test, o.limits);
      p.parts = parts, p.references = references, p.false_alarms = run.false_alarms;
      run.curve.push_back(p);
    };
    point(0);
    for (size_t i = 0; i < stream.size(); ++i) {
      auto r = InspectFile(*engine, stream[i].image, o.limits);
      const bool nok = r.result.error.has_value() || r.result.verdict == "NOK";
      std::filesystem::path teach;
      if (nok) {
        ++run.reviews;  // the operator looks at every NOK part
        if (!stream[i].nok) ++run.false_alarms, teach = stream[i].image;
      } else {
        if (stream[i].nok) ++run.escaped_defects;
        if (o.auto_margin > 0 && run.auto_added < o.auto_max && r.result.score < o.auto_margin * r.result.threshold) {
          ++run.auto_added, teach = stream[i].image;
          if (stream[i].nok) ++run.auto_added_defects;
        }
      }
      if (!teach.empty()) {
        auto grown = engine->WithReference(teach);
        if (!grown.ok()) return Status(grown.status().code(), "adding " + teach.string() + ": " + grown.status().message());
        engine = std::move(*grown);
        ++references;
      }
      if ((i + 1) % size_t(std::max(1, o.eval_every)) == 0 || i + 1 == stream.size()) point(i + 1);
      Report(o.progress, "seed " + std::to_string(run.seed) + ": streaming", i + 1, stream.size());
    }
    runs.push_back(std::move(run));
  }
  return runs;
}

nlohmann::json OnlineJson(const std::vector<OnlineRun>& runs, const OnlineOptions& o) {
  auto stat = [&](auto get) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(get(r));
    const MeanSd m = Aggregate(v);
    auto number = [](double d) { return std::isfinite(d) ? nlohmann::json(d) : nlohmann::json(nullptr); };
    return nlohmann::json{{"mean", number(m.mean)}, {"std", number(m.sd)}};
  };
  nlohmann::json curve = nlohmann::json::array();
  const size_t points = runs.empty() ? 0 : runs.front().curve.size();
  for (size_t i = 0; i < points; ++i) {
    auto at = [i](const OnlineRun& r) { return r.curve[std::min(i, r.curve.size() - 1)]; };
    curve.push_back({{"parts", at(runs.front()).parts},
                     {"accuracy", stat([&](const OnlineRun& r) { return at(r).accuracy; })},
                     {"balanced_accuracy", stat([&](const OnlineRun& r) { return at(r).balanced_accuracy; })},
                     {"references", stat([&](const OnlineRun& r) { return double(at(r).references); })},
                     {"false_alarms", stat([&](const OnlineRun& r) { return double(at(r).false_alarms); })},
                     {"threshold", stat([&](const OnlineRun& r) { return at(r).threshold; })}});
  }
  nlohmann::json per_run = nlohmann::json::array();
  for (const auto& r : runs) {
    nlohmann::json c = nlohmann::json::array();
    for (const auto& p : r.curve)
      c.push_back({{"parts", p.parts}, {"accuracy", p.accuracy}, {"balanced_accuracy", p.balanced_accuracy}, {"references", p.references},
                   {"false_alarms", p.false_alarms}, {"threshold", p.threshold}});
    per_run.push_back({{"seed", r.seed}, {"reviews", r.reviews}, {"false_alarms", r.false_alarms}, {"auto_added", r.auto_added},
                       {"auto_added_defects", r.auto_added_defects}, {"stream_defects", r.stream_defects},
                       {"escaped_defects", r.escaped_defects}, {"test_images", r.test_images}, {"curve", c}});
  }
  return {{"shots", o.shots},
          {"seeds", runs.size()},
          {"eval_every", o.eval_every},
          {"defect_rate", o.defect_rate},
          {"auto", o.auto_margin > 0 ? nlohmann::json{{"margin", o.auto_margin}, {"max", o.auto_max}} : nlohmann::json(nullptr)},
          {"final_accuracy", stat([](const OnlineRun& r) { return r.curve.back().accuracy; })},
          {"final_balanced_accuracy", stat([](const OnlineRun& r) { return r.curve.back().balanced_accuracy; })},
          {"reviews", stat([](const OnlineRun& r) { return double(r.reviews); })},
          {"false_alarms", stat([](const OnlineRun& r) { return double(r.false_alarms); })},
          {"escaped_defects", stat([](const OnlineRun& r) { return double(r.escaped_defects); })},
          {"curve", curve},
          {"runs", per_run}};
}

}  // namespace zeroqc
