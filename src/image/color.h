// Names the dominant colour of an image region in plain words ("dark blue", "white", ...).
#pragma once

#include <string>

#include <opencv2/core.hpp>

namespace zeroqc {

// `mask` (CV_8U, same size as `bgr`) selects the pixels; an empty mask means the whole image.
std::string ColorName(const cv::Mat& bgr, const cv::Mat& mask = {});

}  // namespace zeroqc
