// What checking that an image is whole (ImageLimits::check_complete, src/image/integrity.cc) costs
// on top of decoding it: Arg 0 decodes only, Arg 1 checks then decodes. Images from ../shared.
#include <benchmark/benchmark.h>

#include <fstream>
#include <iterator>
#include <vector>

#include "image/decode.h"

namespace {

namespace fs = std::filesystem;
const fs::path kShared = fs::path(ZEROQC_SOURCE_DIR) / ".." / "shared" / "datasets";

std::vector<uint8_t> Bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void Decode(benchmark::State& state, const fs::path& file, int decode_side) {
  const auto bytes = Bytes(file);
  if (bytes.empty()) return state.SkipWithError(("missing " + file.string()).c_str());
  zeroqc::ImageLimits limits;
  limits.check_complete = state.range(0) != 0;
  limits.decode_side = decode_side;
  for (auto _ : state) {
    auto img = zeroqc::DecodeImage(bytes, limits);
    if (!img.ok()) return state.SkipWithError(img.status().message().c_str());
    benchmark::DoNotOptimize(img->bgr.data);
  }
}

void BM_DecodePng1024(benchmark::State& s) { Decode(s, kShared / "mvtec-toothbrush/test/defective/000.png", 0); }
void BM_DecodeJpeg2874x1916(benchmark::State& s) { Decode(s, kShared / "aws-nova-samples/plasticpart_nok.jpg", 0); }
// As the embedded engine asks: reduced by libjpeg's DCT scaling to a long side of at least 416.
void BM_DecodeJpeg2874x1916Reduced(benchmark::State& s) { Decode(s, kShared / "aws-nova-samples/plasticpart_nok.jpg", 416); }
BENCHMARK(BM_DecodePng1024)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DecodeJpeg2874x1916)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DecodeJpeg2874x1916Reduced)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
