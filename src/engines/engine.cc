#include "engines/engine.h"

namespace zeroqc {

InspectionResult Engine::NewResult(const Image& image) const {
  InspectionResult r;
  r.engine = name();
  r.image_path = image.path;
  r.width = image.bgr.cols;
  r.height = image.bgr.rows;
  return r;
}

Inspection InspectFile(Engine& engine, const std::filesystem::path& path, const ImageLimits& limits, Image* decoded) {
  auto img = LoadImage(path, limits);
  if (decoded) *decoded = img.ok() ? *img : Image{};
  if (img.ok()) return engine.Inspect(*img);
  Inspection failed;
  failed.result.engine = engine.name();
  failed.result.image_path = path.string();
  failed.result.error = img.status().message();
  return failed;
}

}  // namespace zeroqc
