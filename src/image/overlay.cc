#include "image/overlay.h"

#include <algorithm>
#include <cstdio>

#include <opencv2/imgproc.hpp>

namespace zeroqc {

cv::Mat DrawOverlay(const cv::Mat& bgr, const cv::Mat& heatmap, const InspectionResult& r) {
  cv::Mat out = bgr.clone();
  if (!heatmap.empty()) {
    // Colour from blue (half the threshold) to red (twice it); below half the threshold, no tint.
    cv::Mat scaled, u8, colored;
    heatmap.convertTo(scaled, CV_32F, 255.0 / 1.5, -0.5 * 255.0 / 1.5);
    scaled.convertTo(u8, CV_8U);
    cv::applyColorMap(u8, colored, cv::COLORMAP_JET);
    cv::Mat alpha = heatmap > 0.5;
    cv::Mat blended;
    cv::addWeighted(out, 0.55, colored, 0.45, 0, blended);
    blended.copyTo(out, alpha);
  }
  const int thick = std::max(2, std::min(out.cols, out.rows) / 250);
  const double font = std::max(0.6, std::min(out.cols, out.rows) / 900.0);
  for (const auto& o : r.objects) {
    if (!o.has_box) continue;
    cv::Scalar c = o.qc == "NOK" ? cv::Scalar(0, 0, 255) : cv::Scalar(0, 200, 0);
    cv::rectangle(out, {o.box.x_min, o.box.y_min}, {o.box.x_max, o.box.y_max}, c, thick);
    char label[80];
    std::snprintf(label, sizeof label, "%s %.2f", o.name.c_str(), o.score.value_or(0));
    cv::putText(out, label, {o.box.x_min, std::max(o.box.y_min - 2 * thick, int(20 * font))},
                cv::FONT_HERSHEY_SIMPLEX, font * 0.7, c, thick);
  }
  std::string banner = r.error ? "ERROR" : r.verdict;
  char line[120];
  std::snprintf(line, sizeof line, "%s  score %.3f / threshold %.3f", banner.c_str(), r.score, r.threshold);
  cv::Scalar c = r.verdict == "OK" ? cv::Scalar(0, 160, 0) : cv::Scalar(0, 0, 220);
  int base = 0;
  cv::Size ts = cv::getTextSize(line, cv::FONT_HERSHEY_SIMPLEX, font, thick, &base);
  cv::rectangle(out, {0, 0}, {ts.width + 20, ts.height + base + 20}, c, cv::FILLED);
  cv::putText(out, line, {10, ts.height + 10}, cv::FONT_HERSHEY_SIMPLEX, font, {255, 255, 255}, thick);
  return out;
}

}  // namespace zeroqc
