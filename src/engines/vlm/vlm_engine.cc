#include "engines/vlm/vlm_engine.h"

#include <chrono>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "vlm/answer.h"

namespace zeroqc {
namespace {

// Adds the numbers of `b` into `a` (token counts over the first answer and its repair).
void AddUsage(nlohmann::json& a, const nlohmann::json& b) {
  if (a.is_null()) {
    a = b;
    return;
  }
  for (const auto& [k, v] : b.items())
    if (v.is_number() && a.contains(k) && a[k].is_number()) a[k] = a[k].get<double>() + v.get<double>();
    else a[k] = v;
}

StatusOr<ModelAnswer> Understand(const std::string& text) {
  auto j = ExtractJson(text);
  if (!j.ok()) return j.status();
  return ParseAnswer(*j);
}

}  // namespace

StatusOr<EncodedImage> EncodeForModel(const cv::Mat& bgr, int max_side, const std::string& format) {
  EncodedImage e;
  e.format = format;
  cv::Mat img = bgr;
  const double scale = std::min(1.0, double(max_side) / std::max(bgr.cols, bgr.rows));
  if (scale < 1.0) cv::resize(bgr, img, {}, scale, scale, cv::INTER_AREA);
  e.width = img.cols, e.height = img.rows;
  std::vector<uint8_t> buf;
  const bool ok = format == "jpeg" ? cv::imencode(".jpg", img, buf, {cv::IMWRITE_JPEG_QUALITY, 92}) : cv::imencode(".png", img, buf);
  if (!ok) return Internal("cannot encode the image as " + format);
  e.bytes.assign(buf.begin(), buf.end());
  return e;
}

StatusOr<std::unique_ptr<VlmEngine>> VlmEngine::Create(std::unique_ptr<Provider> provider, const VlmEngineOptions& o,
                                                       const std::vector<std::filesystem::path>& references) {
  auto e = std::unique_ptr<VlmEngine>(new VlmEngine());
  e->opt_ = o;
  e->box_format_ = o.box_format ? *o.box_format : o.profile.box_format ? *o.profile.box_format : provider->default_box_format();
  e->opt_.profile.box_format = e->box_format_;  // the instruction tells the model which convention to use
  e->provider_ = std::move(provider);
  auto refs = references.empty() ? o.profile.references : references;
  if (refs.empty()) return InvalidArgument("no reference images: add photos of good parts to the reference folder or the profile");
  ImageLimits limits = o.limits;
  if (limits.decode_side == 0) limits.decode_side = e->DecodeSide();
  for (const auto& path : refs) {
    auto img = LoadImage(path, limits);
    if (!img.ok()) return Status(img.status().code(), "reference " + img.status().message());
    auto enc = EncodeForModel(img->bgr, o.profile.image_max_side, o.profile.image_format);
    if (!enc.ok()) return enc.status();
    e->refs_.push_back(std::move(*enc));
  }
  return e;
}

Inspection VlmEngine::Inspect(const Image& image, const Evidence& evidence) {
  const auto t0 = std::chrono::steady_clock::now();
  Inspection out;
  InspectionResult& r = out.result;
  r = NewResult(image);
  r.model = opt_.model;
  r.threshold = 0.5;  // score is 1 for NOK, 0 for OK: the model gives a verdict, not a degree
  auto finish = [&] {
    r.timing_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return std::move(out);
  };
  auto qc = EncodeForModel(image.bgr, opt_.profile.image_max_side, opt_.profile.image_format);
  if (!qc.ok()) {
    r.error = qc.status().message();
    return finish();
  }
  VlmRequest req;
  req.system = opt_.profile.System();
  req.instruction = opt_.profile.Instruction();
  for (const auto& ref : refs_) req.references.push_back(&ref);
  req.image = &*qc;
  req.profile = &opt_.profile;
  std::vector<EncodedImage> crops;  // crops are small: sent at most at half the image's side
  crops.reserve(evidence.crops.size());
  for (const auto& [label, crop] : evidence.crops) {
    auto enc = EncodeForModel(crop, std::max(64, opt_.profile.image_max_side / 2), opt_.profile.image_format);
    if (!enc.ok()) {
      r.error = enc.status().message();
      return finish();
    }
    crops.push_back(std::move(*enc));
    req.evidence.emplace_back(label, &crops.back());
  }
  req.evidence_note = evidence.note;

  StatusOr<ModelAnswer> answer = InvalidArgument("no answer");
  for (int turn = 0; turn < 2; ++turn) {  // the answer, then at most one repair
    auto reply = provider_->Complete(req);
    if (!reply.ok()) {
      r.error = reply.status().message();
      return finish();
    }
    r.attempts += reply->attempts;
    r.latency_ms += reply->latency_ms;
    AddUsage(r.usage, reply->usage);
    answer = Understand(reply->text);
    if (answer.ok()) break;
    req.previous_answer = reply->text.substr(0, 4000);
    req.repair = RepairInstruction(answer.status().message());
  }
  if (!answer.ok()) {  // never a silent OK
    r.error = "the model's answer is unusable after a repair request: " + answer.status().message();
    return finish();
  }
  r.text = answer->text;
  bool nok = false;
  for (const auto& m : answer->objects) {
    DefectObject o = m.object;
    o.has_box = false;
    if (m.raw_box)
      if (auto b = MapBox(*m.raw_box, m.box_named, box_format_, qc->width, qc->height, r.width, r.height)) o.box = *b, o.has_box = true;
    nok = nok || o.qc == "NOK";
    r.objects.push_back(std::move(o));
  }
  r.verdict = nok ? "NOK" : "OK";
  r.score = nok ? 1.0 : 0.0;
  return finish();
}

}  // namespace zeroqc
