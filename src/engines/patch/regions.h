// Defect regions: connected components of an anomaly map above a threshold.
#pragma once

#include <vector>

#include <opencv2/core.hpp>

namespace zeroqc {

struct Region {
  cv::Rect box;      // in map pixels
  double peak = 0;   // highest map value inside
  int area = 0;      // pixels above the threshold
  cv::Mat mask;      // CV_8U, same size as the map, 255 inside the region
};

// Regions of `map` (CV_32F) whose values exceed `threshold`, larger than `min_area` pixels,
// sorted by peak, highest first.
std::vector<Region> ExtractRegions(const cv::Mat& map, double threshold, int min_area);

}  // namespace zeroqc
