#include "image/color.h"

#include <opencv2/imgproc.hpp>

namespace zeroqc {

std::string ColorName(const cv::Mat& bgr, const cv::Mat& mask) {
  cv::Scalar mean = cv::mean(bgr, mask);
  cv::Mat px(1, 1, CV_8UC3, cv::Scalar(mean[0], mean[1], mean[2])), hsv;
  cv::cvtColor(px, hsv, cv::COLOR_BGR2HSV_FULL);
  const auto v = hsv.at<cv::Vec3b>(0);
  const int h = v[0] * 360 / 256, s = v[1], val = v[2];
  if (val < 50) return "black";
  if (s < 40) return val > 200 ? "white" : "gray";
  std::string hue = h < 15 || h >= 345 ? "red"
                    : h < 40           ? (val < 150 ? "brown" : "orange")
                    : h < 70           ? "yellow"
                    : h < 165          ? "green"
                    : h < 200          ? "cyan"
                    : h < 260          ? "blue"
                    : h < 290          ? "purple"
                                       : "pink";
  if (val < 110 && hue != "brown") return "dark " + hue;
  return hue;
}

}  // namespace zeroqc
