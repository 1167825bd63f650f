// Draws an inspection onto its image: heat map, defect boxes and the verdict.
#pragma once

#include <opencv2/core.hpp>

#include "core/result.h"

namespace zeroqc {

// `heatmap` (optional) is CV_32F at image size in threshold units: values >= 1 are anomalous.
cv::Mat DrawOverlay(const cv::Mat& bgr, const cv::Mat& heatmap, const InspectionResult& result);

}  // namespace zeroqc
