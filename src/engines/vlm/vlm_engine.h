// The vision-language engine of the reference design: reference image(s), the QC image and a prompt
// profile go to a multimodal model; its JSON answer becomes the same result as the embedded engine's.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "engines/engine.h"
#include "vlm/provider.h"

namespace zeroqc {

struct VlmEngineOptions {
  PromptProfile profile;
  std::optional<BoxFormat> box_format;  // wins over the profile's, which wins over the provider's
  std::string model;                    // reported in results
  ImageLimits limits;
};

class VlmEngine : public Engine {
 public:
  // Encodes the references once; they are sent with every request.
  static StatusOr<std::unique_ptr<VlmEngine>> Create(std::unique_ptr<Provider> provider, const VlmEngineOptions& options,
                                                     const std::vector<std::filesystem::path>& references);
  std::string name() const override { return "vlm"; }
  Inspection Inspect(const Image& image) override { return Inspect(image, {}); }
  // With another engine's evidence after the image: a note and labelled crops (cascade engine).
  struct Evidence {
    std::string note;
    std::vector<std::pair<std::string, cv::Mat>> crops;  // label, BGR crop
  };
  Inspection Inspect(const Image& image, const Evidence& evidence);
  int DecodeSide() const override { return opt_.profile.image_max_side; }  // what the model is sent

 private:
  VlmEngine() = default;
  std::unique_ptr<Provider> provider_;
  VlmEngineOptions opt_;
  BoxFormat box_format_ = BoxFormat::kNorm1000;
  std::vector<EncodedImage> refs_;
};

// The image as sent to a model: fitted within max_side (never enlarged), encoded as png or jpeg.
StatusOr<EncodedImage> EncodeForModel(const cv::Mat& bgr, int max_side, const std::string& format);

}  // namespace zeroqc
