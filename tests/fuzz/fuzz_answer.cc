// Any text as a vision-language model's answer: extraction and parsing must refuse or parse,
// never crash, and parsed boxes must lie inside the image once mapped.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "vlm/answer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto j = zeroqc::ExtractJson(text);
  if (!j.ok()) return 0;
  auto a = zeroqc::ParseAnswer(*j);
  if (!a.ok()) return 0;
  for (const auto& o : a->objects) {
    if (!o.raw_box) continue;
    for (auto f : {zeroqc::BoxFormat::kNorm1000, zeroqc::BoxFormat::kNorm1000Yx, zeroqc::BoxFormat::kPixels}) {
      auto b = zeroqc::MapBox(*o.raw_box, o.box_named, f, 800, 533, 2874, 1916);
      if (b && (b->x_min < 0 || b->y_min < 0 || b->x_max > 2874 || b->y_max > 1916 || b->x_min >= b->x_max || b->y_min >= b->y_max))
        std::abort();
    }
  }
  return 0;
}
