#include "engines/engine.h"

namespace zeroqc {

InspectionResult Engine::NewResult(const Image& image) const {
  InspectionResult r;
  r.engine = name();
  r.image_path = image.path;
  r.width = image.size().width;
  r.height = image.size().height;
  return r;
}

Inspection InspectFile(Engine& engine, const std::filesystem::path& path, const ImageLimits& limits, Image* decoded) {
  ImageLimits l = limits;
  if (l.decode_side == 0) l.decode_side = engine.DecodeSide();
  auto img = LoadImage(path, l);
  if (decoded) *decoded = img.ok() ? *img : Image{};
  if (img.ok()) return engine.Inspect(*img);
  Inspection failed;
  failed.result.engine = engine.name();
  failed.result.image_path = path.string();
  failed.result.error = img.status().message();
  return failed;
}

}  // namespace zeroqc
