#include "engines/patch/regions.h"

#include <algorithm>

#include <opencv2/imgproc.hpp>

namespace zeroqc {

std::vector<Region> ExtractRegions(const cv::Mat& map, double threshold, int min_area) {
  cv::Mat above = map > threshold;
  cv::Mat labels, stats, centroids;
  int n = cv::connectedComponentsWithStats(above, labels, stats, centroids, 8, CV_32S);
  std::vector<Region> out;
  for (int i = 1; i < n; ++i) {
    int area = stats.at<int>(i, cv::CC_STAT_AREA);
    if (area < min_area) continue;
    Region r;
    r.box = {stats.at<int>(i, cv::CC_STAT_LEFT), stats.at<int>(i, cv::CC_STAT_TOP),
             stats.at<int>(i, cv::CC_STAT_WIDTH), stats.at<int>(i, cv::CC_STAT_HEIGHT)};
    r.area = area;
    r.mask = labels == i;
    double mx = 0;
    cv::minMaxLoc(map, nullptr, &mx, nullptr, nullptr, r.mask);
    r.peak = mx;
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const Region& a, const Region& b) { return a.peak > b.peak; });
  return out;
}

}  // namespace zeroqc
