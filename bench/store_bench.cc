// The database's share of one inspection, SQLite against PostgreSQL: everything the service asks
// of the store for one upload (product check, image blob, enqueue, claim, finish with one defect
// and a webhook delivery, the result read back), without the engine.
//   build/bench/store_bench                    SQLite only
//   ZEROQC_PG_URL=postgresql://... build/bench/store_bench   both (bench/load/scale.sh starts one)
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>

#include "server/store.h"

namespace zeroqc {
namespace {

void RoundTrip(benchmark::State& state, const std::string& url) {
  const auto dir = std::filesystem::temp_directory_path() / ("zeroqc-store-bench-" + std::to_string(state.range(0)));
  std::filesystem::remove_all(dir);
  auto store = Store::Open(dir, url);
  if (!store.ok()) return state.SkipWithError(store.status().message().c_str());
  Store& s = **store;
  (void)s.PutProduct({"disc", "patch", nlohmann::json::object(), "http://hooks.example/x", "k"});
  // A 1 MB upload of incompressible bytes (like a PNG or JPEG), new each time (blobs are content-addressed).
  std::string image(1 << 20, '\0');
  uint64_t x = 88172645463325252ull;
  for (char& c : image) x ^= x << 13, x ^= x >> 7, x ^= x << 17, c = char(x);
  int64_t n = 0;
  for (auto _ : state) {
    std::memcpy(image.data(), &++n, sizeof n);
    if (!s.GetProduct("disc")) return state.SkipWithError("no product");
    NewInspection in;
    in.product = "disc";
    in.image_blob = *s.blobs().Put(image, "png");
    auto id = s.Enqueue(in);
    auto item = s.ClaimNext("bench", 30);
    InspectionResult r;
    r.verdict = "NOK", r.score = 0.9, r.threshold = 0.5;
    r.objects.push_back({"anomaly", "red", "NOK", "x", {1, 2, 3, 4}, 0.9});
    if (!item || !s.Finish(item->id, "bench", r, "").ok()) return state.SkipWithError("claim or finish failed");
    benchmark::DoNotOptimize(s.GetInspection(*id));
  }
  state.SetItemsProcessed(state.iterations());
  store->reset();
  std::filesystem::remove_all(dir);
}

void BM_StoreRoundTripSqlite(benchmark::State& state) { RoundTrip(state, ""); }
void BM_StoreRoundTripPostgres(benchmark::State& state) {
  const char* url = std::getenv("ZEROQC_PG_URL");
  if (!url) return state.SkipWithError("set ZEROQC_PG_URL to a database to measure PostgreSQL");
  RoundTrip(state, url);
}
BENCHMARK(BM_StoreRoundTripSqlite)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_StoreRoundTripPostgres)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace zeroqc

BENCHMARK_MAIN();
