#include "features/backbone.h"

#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "core/hash.h"
#include "core/warn.h"

namespace zeroqc {

StatusOr<BackboneSpec> BackboneSpec::Load(const std::filesystem::path& json_path) {
  std::ifstream in(json_path);
  if (!in)
    return NotFound("backbone spec " + json_path.string() + " not found: run ./setup.sh to convert the default backbone");
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return Corrupt("backbone spec " + json_path.string() + " is not valid JSON");
  BackboneSpec s;
  if (j.is_object() && j.contains("backbones")) {  // a composite
    if (!j["backbones"].is_array() || j["backbones"].size() < 2 || j["backbones"].size() > 4)
      return InvalidArgument("backbone spec " + json_path.string() + ": \"backbones\" lists 2-4 spec files");
    s.name = j.value("name", json_path.stem().string());
    for (const auto& part : j["backbones"]) {
      if (!part.is_string()) return InvalidArgument("backbone spec " + json_path.string() + ": \"backbones\" lists spec file names");
      auto p = Load(json_path.parent_path() / part.get<std::string>());
      if (!p.ok()) return p.status();
      if (!p->parts.empty()) return InvalidArgument("backbone spec " + json_path.string() + ": a composite of composites");
      s.layers.insert(s.layers.end(), p->layers.begin(), p->layers.end());
      s.parts.push_back(std::move(*p));
    }
    s.input_width = s.parts.front().input_width;
    s.input_height = s.parts.front().input_height;
    return s;
  }
  try {
    s.name = j.value("name", json_path.stem().string());
    s.model = json_path.parent_path() / j.at("model").get<std::string>();
    s.input_width = j.at("input_width").get<int>();
    s.input_height = j.at("input_height").get<int>();
    if (j.contains("mean")) s.mean = j["mean"].get<std::array<float, 3>>();
    if (j.contains("std")) s.std = j["std"].get<std::array<float, 3>>();
    s.layers = j.at("layers").get<std::vector<std::string>>();
    s.runtime = j.value("runtime", "auto");
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument("backbone spec " + json_path.string() + ": " + e.what());
  }
  if (s.runtime != "auto" && s.runtime != "onednn" && s.runtime != "opencv")
    return InvalidArgument("backbone spec " + json_path.string() + ": runtime is auto, onednn or opencv");
  if (s.input_width < 32 || s.input_height < 32 || s.layers.empty())
    return InvalidArgument("backbone spec " + json_path.string() + " needs an input of at least 32x32 and a layer");
  return s;
}

StatusOr<std::unique_ptr<Backbone>> Backbone::Open(const BackboneSpec& spec) {
  if (!spec.parts.empty()) {
    auto b = std::unique_ptr<Backbone>(new Backbone());
    b->spec_ = spec;
    std::string key = "composite";
    for (const auto& p : spec.parts) {
      auto part = Open(p);
      if (!part.ok()) return part.status();
      key += "|" + (*part)->fingerprint();
      b->runtime_ += (b->runtime_.empty() ? "" : " + ") + (*part)->runtime();
      b->parts_.push_back(std::move(*part));
    }
    b->fingerprint_ = Sha256Hex(key);
    return b;
  }
  auto hash = Sha256File(spec.model);
  if (!hash.ok()) return NotFound("backbone model " + spec.model.string() + " not found: run ./setup.sh");
  auto b = std::unique_ptr<Backbone>(new Backbone());
  b->spec_ = spec;
  std::string key = *hash + "|" + std::to_string(spec.input_width) + "x" + std::to_string(spec.input_height);
  for (int c = 0; c < 3; ++c) key += "|" + std::to_string(spec.mean[c]) + "/" + std::to_string(spec.std[c]);
  for (const auto& l : spec.layers) key += "|" + l;
  std::string runtime = spec.runtime;
  if (const char* env = std::getenv("ZEROQC_BACKBONE_RUNTIME"); env && *env) runtime = env;
  if (runtime != "opencv") {
    auto net = DnnlNet::Load(spec.model, spec.input_height, spec.input_width, spec.layers);
    if (net.ok()) {
      b->dnnl_ = std::move(*net);
      b->runtime_ = "onednn (" + b->dnnl_->layout() + ")";
    } else if (runtime == "onednn") {
      return Status(net.status().code(), "backbone " + spec.name + ": oneDNN cannot run it: " + net.status().message());
    } else {
      Warn("backbone_fallback", "backbone " + spec.name + ": oneDNN cannot run it (" + net.status().message() + "); using OpenCV DNN");
    }
  }
  if (!b->dnnl_) {
    try {
      b->net_ = cv::dnn::readNetFromONNX(spec.model.string());
    } catch (const cv::Exception& e) {
      return Corrupt("OpenCV cannot load " + spec.model.string() + ": " + e.err);
    }
    b->runtime_ = "opencv";
  }
  // The runtimes' features differ in the last bits: memory banks are not shared between them.
  b->fingerprint_ = Sha256Hex(key + "|" + (b->dnnl_ ? "onednn" : "opencv"));
  return b;
}

StatusOr<std::vector<FeatureMap>> Backbone::Extract(const cv::Mat& bgr) {
  if (!parts_.empty()) {
    std::vector<FeatureMap> all;
    for (auto& p : parts_) {
      auto maps = p->Extract(bgr);
      if (!maps.ok()) return maps.status();
      for (auto& m : *maps) all.push_back(std::move(m));
    }
    return all;
  }
  // Resized first, then swapped: the same pixels, without a full-size copy of a camera image.
  cv::Mat resized;
  cv::resize(bgr, resized, {spec_.input_width, spec_.input_height}, 0, 0, cv::INTER_AREA);
  cv::cvtColor(resized, resized, cv::COLOR_BGR2RGB);
  resized.convertTo(resized, CV_32F, 1.0 / 255);
  cv::subtract(resized, cv::Scalar(spec_.mean[0], spec_.mean[1], spec_.mean[2]), resized);
  cv::divide(resized, cv::Scalar(spec_.std[0], spec_.std[1], spec_.std[2]), resized);
  cv::Mat blob = cv::dnn::blobFromImage(resized);
  std::vector<FeatureMap> maps;
  if (dnnl_) {
    auto outs = dnnl_->Run(blob);
    if (!outs.ok()) return Status(outs.status().code(), "backbone " + spec_.name + " failed: " + outs.status().message());
    for (auto& o : *outs) maps.push_back({std::move(o.data), o.channels, o.height, o.width});
    return maps;
  }
  std::vector<cv::Mat> outs;
  try {
    std::lock_guard lock(mu_);
    net_.setInput(blob);
    net_.forward(outs, std::vector<cv::String>(spec_.layers.begin(), spec_.layers.end()));
  } catch (const cv::Exception& e) {
    return Internal("backbone " + spec_.name + " failed: " + e.err);
  }
  for (auto& o : outs) {
    if (o.dims != 4) return Internal("backbone layer output is not NCHW");
    FeatureMap m{o.reshape(1, o.size[1]).clone(), o.size[1], o.size[2], o.size[3]};
    maps.push_back(std::move(m));
  }
  return maps;
}

}  // namespace zeroqc
