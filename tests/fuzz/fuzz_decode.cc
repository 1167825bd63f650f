// Any bytes as an uploaded image: probing, the completeness check (libjpeg and libpng with every
// warning an error, as serve checks uploads) and decoding must refuse or decode, never crash, and a
// decoded image must be what the header said (within the pixel limit).
#include <cstdint>
#include <cstdlib>

#include "image/decode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  zeroqc::ImageLimits limits;
  limits.max_pixels = 4'000'000;  // keeps each run fast; the limit logic is the same
  limits.check_complete = size % 2 == 0;  // both paths: with the check, and the decoders alone
  auto img = zeroqc::DecodeImage({data, size}, limits);
  if (img.ok() && (img->bgr.empty() || int64_t(img->bgr.total()) > limits.max_pixels || img->bgr.channels() != 3)) std::abort();
  return 0;
}
