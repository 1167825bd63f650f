// Any bytes as an uploaded image: probing and decoding must refuse or decode, never crash, and a
// decoded image must be what the header said (within the pixel limit).
#include <cstdint>
#include <cstdlib>

#include "image/decode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  zeroqc::ImageLimits limits;
  limits.max_pixels = 4'000'000;  // keeps each run fast; the limit logic is the same
  auto img = zeroqc::DecodeImage({data, size}, limits);
  if (img.ok() && (img->bgr.empty() || int64_t(img->bgr.total()) > limits.max_pixels || img->bgr.channels() != 3)) std::abort();
  return 0;
}
