// Choosing and checking references by how photos look as a whole: each photo's patch descriptors
// through the references' backbone, one vector per photo to compare looks with, and the choice of
// references that cover a batch (refs suggest, bench --draw cover, refs check).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/status.h"
#include "engines/patch/memory_bank.h"
#include "features/backbone.h"
#include "image/decode.h"

namespace zeroqc {

struct ImageLook {
  std::filesystem::path path;
  MemoryBank bank;                // its patches
  std::vector<float> descriptor;  // its mean patch, each layer's part L2-normalised
};

// Describes `paths` with `backbone`, each decoded as the engine decodes (long side 1024). An
// unreadable photo is skipped with a line on stderr (one bad file does not spoil a batch); a backbone
// failure is an error. `progress(done, total)` after each photo when given.
StatusOr<std::vector<ImageLook>> DescribeLooks(Backbone& backbone, const std::vector<std::filesystem::path>& paths,
                                               ImageLimits limits, const std::function<void(size_t, size_t)>& progress = {});

// References unlike the others: a leave-one-out score over the threshold and over kOutlierRatio x
// the scores' median (one is defective, or a variant shown once). The same rule for refs check, the
// service's calibration and so the page. `median`, when given, receives the median.
inline constexpr double kOutlierRatio = 1.5;
std::vector<bool> UnlikeReferences(const std::vector<double>& loo_scores, double threshold, double* median = nullptr);

// Euclidean distance between two descriptors.
double LookDistance(const std::vector<float>& a, const std::vector<float>& b);

// Groups of look-alike photos: single linkage, two photos joining when their distance is under
// `gap` x the median distance from a photo to its nearest other photo. Groups of indices, largest first.
std::vector<std::vector<size_t>> LookAlikeGroups(const std::vector<std::vector<float>>& descriptors, double gap = 2.0);

// References chosen to cover a batch of unlabelled photos, most of them good. Each photo is scored
// against the `peers` photos that look most like it (a rare variant finds its own kind, a local
// defect matches none); those over the batch's threshold (CalibrateBatch) stay out; from the rest,
// greedy k-centre over descriptors: the most typical first, then each time the photo farthest from
// those chosen. Indices into `looks`.
struct ReferenceChoice {
  std::vector<size_t> chosen;      // in the order picked
  std::vector<size_t> candidates;  // judged normal (or, if too few, the `count` most typical)
  std::vector<double> scores;      // each photo's look-alike score
  double threshold = 0;            // the batch's threshold on those scores
};
ReferenceChoice ChooseReferences(const std::vector<const ImageLook*>& looks, size_t count, size_t peers = 4);
ReferenceChoice ChooseReferences(const std::vector<ImageLook>& looks, size_t count, size_t peers = 4);

}  // namespace zeroqc
