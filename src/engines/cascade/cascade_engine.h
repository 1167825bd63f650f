// The cascade: the embedded engine screens every part; the parts it is unsure of (and, if asked,
// every NOK part, for names and reasons) go to the vision-language model with the engine's
// evidence: crops of its strongest regions, their boxes in the full image, its score. The model's
// verdict decides the uncertain parts; a model that fails never turns a part into a silent OK:
// the embedded verdict stands and the result says so.
#pragma once

#include <memory>

#include "engines/engine.h"
#include "engines/vlm/vlm_engine.h"

namespace zeroqc {

struct CascadeOptions {
  // The uncertain band, in units of the embedded threshold: score < low x threshold is OK and
  // score > high x threshold is NOK without a model call. 0: from the references' scores (see
  // CascadeBand).
  double low = 0, high = 0;
  bool low_set = false, high_set = false;  // given (else from CascadeBand, or CascadeLineBand)
  bool explain_nok = false;  // send every NOK part too, for the model's names, colours and reasons
  int crops = 3;             // the strongest regions sent as crops
};

// The default band from the embedded engine's calibration: the references' own scores (their
// median m) against the threshold t, and the threshold's uncertainty with K references.
// - Below m a part looks like the references; the band reaches as far above t as m is below it,
//   twice over, since few references set t low (the calibration gap): [m/t, 1 + 2(1 - m/t)].
// - A threshold from K references is uncertain by about u = 0.5 / sqrt(K) (a +-50% prior for one
//   reference): the band is at least [1/(1+u), 1+u].
// The wider of the two, clamped to [0.3, 0.95] and [1.05, 3]. The 0.5 was looked at on toothbrush
// only (docs/BENCHMARKS.md): a round prior, not a fit.
std::pair<double, double> CascadeBand(const nlohmann::json& calibration);

// The band of a part the line's recent parts judged (a line window). The window holds defects
// too, so the references' role goes to the parts it judged OK (scores under the threshold): a part
// under their median m is clearly OK. The window's threshold splits its two groups (Otsu) rather
// than sitting just above the good ones, so the band is not stretched upward as CascadeBand's is:
// [min(m, 1/(1+u)), 1+u], u = 0.5 / sqrt(window), clamped as CascadeBand. On toothbrush K = 1 the
// window's threshold errs high (recall 0.76, specificity 0.98: docs/BENCHMARKS.md), which the
// OK parts' median reaches and the prior alone did not. A set band (CascadeOptions low/high)
// applies to every part.
std::pair<double, double> CascadeLineBand(const std::vector<double>& peer_scores, double threshold);

class CascadeEngine : public Engine {
 public:
  // `screen`: the embedded engine (it must give scores, a threshold and a heat map); `judge`: the
  // vision-language engine.
  static StatusOr<std::unique_ptr<CascadeEngine>> Create(std::unique_ptr<Engine> screen, std::unique_ptr<VlmEngine> judge,
                                                         CascadeOptions options);
  std::string name() const override { return "cascade"; }
  Inspection Inspect(const Image& image) override;
  nlohmann::json Calibration() const override;
  int DecodeSide() const override { return std::max(screen_->DecodeSide(), judge_->DecodeSide()); }
  // The screen's: its boxes are the ones operators name (a model-judged part's objects are the model's, unnamed by examples).
  StatusOr<std::vector<float>> DescribeRegion(const Image& image, const BoundingBox& box) override {
    return screen_->DescribeRegion(image, box);
  }

 private:
  CascadeEngine() = default;
  std::unique_ptr<Engine> screen_;
  std::unique_ptr<VlmEngine> judge_;
  CascadeOptions opt_;
};

}  // namespace zeroqc
