// The one interface every inspection engine implements (patch today; vlm and hybrid next).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "core/result.h"
#include "image/decode.h"

namespace zeroqc {

struct Inspection {
  InspectionResult result;
  // Optional: CV_32F in units of the threshold (1.0 = threshold), covering the whole image at the
  // engine's own resolution: stretch it to whatever size is drawn or scored (the full-size map of
  // a camera image would cost more memory than the image).
  cv::Mat heatmap;
  // The scores of the other parts that judged this one beside the references (a line window), on
  // the scale of this one's: what its threshold came from. Empty: the references alone judged it.
  std::vector<double> peer_scores;
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string name() const = 0;
  // Thread-safe. Never throws: failures come back in result.error.
  virtual Inspection Inspect(const Image& image) = 0;
  // Judges the part without learning from it: a setup check's photos must not join a line window.
  // Thread-safe.
  virtual Inspection InspectAside(const Image& image) { return Inspect(image); }
  // How the engine chose its threshold (e.g. the references' own scores), for reports; null if
  // it has nothing to say.
  virtual nlohmann::json Calibration() const { return nullptr; }
  // The long side, in pixels, below which decoding an image gains this engine nothing (it scales
  // the image down to its input anyway); 0 = the full resolution. See ImageLimits::decode_side.
  virtual int DecodeSide() const { return 0; }
  // A new engine that also knows `reference` (a good part an operator confirmed), derived from this
  // one without redoing the other references; this one is left as it is (inspections running on it
  // finish on it). kUnsupported where an engine can only be built anew.
  virtual StatusOr<std::unique_ptr<Engine>> WithReference(const std::filesystem::path& reference) const {
    (void)reference;
    return Unsupported(name() + " engine: no incremental reference update");
  }
  // A descriptor of what `box` (original pixels) of the image adds to the part around it: an
  // operator's named example of a defect type, or a region to name (engines/defect_names.h).
  // kUnsupported where an engine has no features of its own.
  virtual StatusOr<std::vector<float>> DescribeRegion(const Image& image, const BoundingBox& box) {
    (void)image, (void)box;
    return Unsupported(name() + " engine: no region descriptors (defect types are named by the embedded engine)");
  }

 protected:
  // A result with this engine's name and the image's path and size filled in.
  InspectionResult NewResult(const Image& image) const;
};

// Reads and decodes `path` within `limits` (at the engine's DecodeSide unless limits set one), then
// inspects it; a file that cannot be read becomes an error result. `decoded`, when given, receives the image (empty when it failed).
Inspection InspectFile(Engine& engine, const std::filesystem::path& path, const ImageLimits& limits,
                       Image* decoded = nullptr);

}  // namespace zeroqc
