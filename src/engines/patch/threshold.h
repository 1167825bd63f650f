// The OK/NOK threshold and the image score, calibrated from reference images of good parts
// alone (no labels).
#pragma once

#include <vector>

#include <opencv2/core.hpp>

namespace zeroqc {

// Image score: the mean of the highest 0.1% of the anomaly map (at least one pixel). Less noisy
// than the single maximum, still dominated by the most anomalous region.
double ImageScore(const cv::Mat& map);

// Rule: each reference is scored against a memory bank built from all the *other* references
// (leave-one-out), which is how a new good part looks to the full bank. With s those scores,
//   threshold = median(s) + sigmas * max(1.4826 * MAD(s), 0.05 * median(s))
// The median absolute deviation ignores the few references that are rare among the others (a
// unique colour variant scores high when its only look-alike is left out) and would otherwise
// drag the threshold up; the floor keeps a few-shot bank from a zero spread.
// REQUIRES: !loo_scores.empty().
double CalibrateThreshold(std::vector<double> loo_scores, double sigmas);

// The threshold of a bank of `references` images.
// - Two or more: CalibrateThreshold(loo_scores) with sigmas scaled by clamp(references / 32,
//   0.25, 1). With few references leave-one-out is pessimistic (the left-out image's own look is
//   missing from the bank), so its median already sits above a new good part's score and less
//   margin is needed; from 32 references on the full margin applies.
// - One (no leave-one-out): `loo_scores` holds the scores of mildly jittered copies of the single
//   reference against its own bank, which are optimistic; threshold = their median x
//   (1 + 0.35 * sigmas). A new good part of a product that varies more than the jitter (a part
//   hanging at another angle) still scores above it: one reference cannot show how much the
//   product varies, and the calibration gap at K = 1 is the largest (docs/BENCHMARKS.md).
// Chosen on the development sets together (5 seeds; K = 4 on all six, K = 1 on five), replacing a bracket
// of leave-one-out and jittered medians that put the threshold too low on most of them.
double CalibrateFewShot(const std::vector<double>& loo_scores, size_t references, double sigmas);

// The threshold of a zero-shot batch from its own mutual scores (no labels, no references). The
// log scores are split in two groups where the between-group variance is largest (Otsu); the
// lower group stands for the good parts, and
//   threshold = exp(median(low) + sigmas * max(1.4826 * MAD(low), 0.02))   (log scores)
// ASSUMES the good parts are the lowest-scoring group of the batch, whatever their share. On the
// development sets' test folders (22-38% good) and on line-like batches made from them (every
// good part plus 10% defects) it beat both a median rule (which needs a good majority) and a
// fixed 10th-percentile rule; see docs/BENCHMARKS.md. REQUIRES: !batch_scores.empty().
double CalibrateBatch(std::vector<double> batch_scores, double sigmas);

}  // namespace zeroqc
