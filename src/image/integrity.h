// Whether an image file is whole: decoders mend damage silently (libjpeg fills a cut-off scan with
// grey and only warns "premature end of data segment"; libpng drops an ancillary chunk whose CRC is
// wrong), and a mended image could become a reference. This runs libjpeg and libpng themselves with
// every warning made an error. Memory: one row (a progressive JPEG: its coefficients).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/status.h"

namespace zeroqc {

// OK, or kCorrupt naming the decoder's complaint. Formats other than JPEG and PNG: OK.
Status CheckComplete(std::span<const uint8_t> bytes, const std::string& format);

}  // namespace zeroqc
