// Per-image latency of the embedded engine, end to end: read + decode a 1024x1024 PNG, features,
// nearest-neighbour search against the memory bank of 48 references, anomaly map, regions.
//   build/bench/inspect_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdio>

#include "engines/patch/patch_engine.h"

namespace {

const std::filesystem::path kData = std::filesystem::path(ZEROQC_SOURCE_DIR) / ".." / "shared" / "datasets" / "mvtec-toothbrush";

std::unique_ptr<zeroqc::PatchEngine> MakeEngine(int refs) {
  auto all = zeroqc::ListImages(kData / "train/good");
  if (!all.ok() || all->empty()) return nullptr;
  all->resize(std::min<size_t>(refs, all->size()));
  zeroqc::PatchEngineOptions o;
  o.backbone_spec = std::filesystem::path(ZEROQC_BINARY_DIR) / "models" / "inception_v3.json";
  o.cache_dir = std::filesystem::temp_directory_path() / "zeroqc-bench-cache";
  auto e = zeroqc::PatchEngine::Create(o, *all);
  if (!e.ok()) {
    std::fprintf(stderr, "%s\n", e.status().message().c_str());
    return nullptr;
  }
  return std::move(e.value());
}

void BM_InspectEndToEnd(benchmark::State& state) {
  auto engine = MakeEngine(static_cast<int>(state.range(0)));
  if (!engine) {
    state.SkipWithError("needs ../shared/datasets/mvtec-toothbrush and ./setup.sh");
    return;
  }
  const auto image = kData / "test/defective/000.png";
  for (auto _ : state) {
    auto img = zeroqc::LoadImage(image);
    auto r = engine->Inspect(*img);
    benchmark::DoNotOptimize(r.result.score);
  }
  state.counters["bank_rows"] = engine->bank().rows.rows;
}
BENCHMARK(BM_InspectEndToEnd)->Arg(1)->Arg(4)->Arg(48)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
