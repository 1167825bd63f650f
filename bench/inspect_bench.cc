// Latency of the embedded engine, end to end as zeroqc inspect does it (read + decode, features,
// nearest-neighbour search against the memory bank, anomaly map, regions), on the image sizes of
// issue 15, and the bank build for 48 references.
//   build/bench/inspect_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//   bench/compare.sh OLD_COMMIT   (old and new built from this file, run alternately, ratios)
//   ZEROQC_BENCH_BACKBONE=build/models/lite2.json build/bench/inspect_bench   (another backbone spec;
//   default inception_v3.json, which every older build has)
// Only long-standing library calls are used here, so that compare.sh can build this file against
// an older commit.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "engines/patch/patch_engine.h"

namespace {

namespace fs = std::filesystem;
const fs::path kShared = fs::path(ZEROQC_SOURCE_DIR) / ".." / "shared" / "datasets";
const fs::path kToothbrush = kShared / "mvtec-toothbrush";
const fs::path kCameraJpeg = kShared / "aws-nova-samples" / "plasticpart_nok.jpg";  // 2874x1916

std::vector<fs::path> References(int n) {
  auto all = zeroqc::ListImages(kToothbrush / "train/good");
  if (!all.ok()) return {};
  all->resize(std::min<size_t>(n, all->size()));
  return *all;
}

zeroqc::PatchEngineOptions Options(bool cached) {
  zeroqc::PatchEngineOptions o;
  const char* spec = std::getenv("ZEROQC_BENCH_BACKBONE");
  o.backbone_spec = spec && *spec ? fs::path(spec) : fs::path(ZEROQC_BINARY_DIR) / "models" / "inception_v3.json";
  if (cached) o.cache_dir = fs::temp_directory_path() / "zeroqc-bench-cache";
  return o;
}

std::unique_ptr<zeroqc::PatchEngine> MakeEngine(int refs) {
  auto e = zeroqc::PatchEngine::Create(Options(true), References(refs));
  if (!e.ok()) {
    std::fprintf(stderr, "%s\n", e.status().message().c_str());
    return nullptr;
  }
  return std::move(e.value());
}

// A 6000x4000 camera photo, made once from the demo photo (issue 15's largest size).
fs::path LargeJpeg() {
  const fs::path out = fs::temp_directory_path() / "zeroqc-bench-6000x4000.jpg";
  if (!fs::exists(out)) {
    cv::Mat img = cv::imread(kCameraJpeg.string()), big;
    if (img.empty()) return {};
    cv::resize(img, big, {6000, 4000}, 0, 0, cv::INTER_CUBIC);
    cv::imwrite(out.string(), big, {cv::IMWRITE_JPEG_QUALITY, 92});
  }
  return out;
}

void Inspect(benchmark::State& state, const fs::path& image) {
  auto engine = MakeEngine(static_cast<int>(state.range(0)));
  if (!engine || image.empty() || !fs::exists(image)) {
    state.SkipWithError("needs ../shared/datasets and ./setup.sh");
    return;
  }
  for (auto _ : state) {
    auto r = zeroqc::InspectFile(*engine, image, {});
    if (r.result.error) state.SkipWithError(r.result.error->c_str());
    benchmark::DoNotOptimize(r.result.score);
  }
  state.counters["bank_rows"] = engine->bank().rows.rows;
}

void BM_InspectPng1024(benchmark::State& state) { Inspect(state, kToothbrush / "test/defective/000.png"); }
void BM_InspectJpeg2874x1916(benchmark::State& state) { Inspect(state, kCameraJpeg); }
void BM_InspectJpeg6000x4000(benchmark::State& state) { Inspect(state, LargeJpeg()); }
BENCHMARK(BM_InspectPng1024)->Arg(1)->Arg(48)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_InspectJpeg2874x1916)->Arg(48)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_InspectJpeg6000x4000)->Arg(48)->Unit(benchmark::kMillisecond)->UseRealTime();

// The memory bank of 48 references built from nothing (no cache): describe, coreset, calibrate.
void BM_BankBuild(benchmark::State& state) {
  const auto refs = References(static_cast<int>(state.range(0)));
  if (refs.empty()) {
    state.SkipWithError("needs ../shared/datasets");
    return;
  }
  for (auto _ : state) {
    auto e = zeroqc::PatchEngine::Create(Options(false), refs);
    if (!e.ok()) state.SkipWithError(e.status().message().c_str());
    benchmark::DoNotOptimize(e.ok());
  }
}
BENCHMARK(BM_BankBuild)->Arg(48)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);

// Issue 11: one more reference for a 48-reference product, as a review "add to references" does
// it (PatchEngine::WithReference: one feature extraction, one search, the coreset re-chosen, the
// threshold recalibrated), against BM_BankBuild/48's rebuild from every reference.
void BM_AddReference(benchmark::State& state) {
  auto engine = MakeEngine(static_cast<int>(state.range(0)));
  const auto extra = kToothbrush / "test/good/000.png";  // not one of the 48
  if (!engine || !fs::exists(extra)) {
    state.SkipWithError("needs ../shared/datasets and ./setup.sh");
    return;
  }
  for (auto _ : state) {
    auto e = engine->WithReference(extra);
    if (!e.ok()) state.SkipWithError(e.status().message().c_str());
    benchmark::DoNotOptimize(e.ok());
  }
  state.counters["bank_rows"] = engine->bank().rows.rows;
}
BENCHMARK(BM_AddReference)->Arg(48)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
