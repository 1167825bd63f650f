// Draws an inspection onto its image: heat map, defect boxes and the verdict.
#pragma once

#include <opencv2/core.hpp>

#include "core/result.h"

namespace zeroqc {

// `heatmap` (optional) is CV_32F in threshold units (values >= 1 are anomalous) at any resolution,
// covering the whole image. `bgr` may be a reduced decode of the image that `result` describes:
// boxes are scaled from the result's width x height. The overlay is `bgr`'s size, shrunk to at most
// `max_side` on its long side (0: never).
cv::Mat DrawOverlay(const cv::Mat& bgr, const cv::Mat& heatmap, const InspectionResult& result, int max_side = 4096);

}  // namespace zeroqc
