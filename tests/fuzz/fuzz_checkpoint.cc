// A PyTorch checkpoint is untrusted input (issue 26): any bytes, as a zip archive or a legacy
// stream, must give a state dict or a clear error, never a crash, a hang or a huge allocation.
#include <cstdint>
#include <string>

#include "features/torch_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto sd = zeroqc::ParseTorchCheckpoint(std::string(reinterpret_cast<const char*>(data), size), "fuzz.pth");
  (void)sd;
  return 0;
}
