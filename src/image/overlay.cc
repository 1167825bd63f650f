#include "image/overlay.h"

#include <algorithm>
#include <cstdio>

#include <opencv2/imgproc.hpp>

namespace zeroqc {

cv::Mat DrawOverlay(const cv::Mat& bgr, const cv::Mat& heatmap, const InspectionResult& r, int max_side) {
  cv::Mat out;
  const double shrink = max_side > 0 ? std::min(1.0, double(max_side) / std::max(bgr.cols, bgr.rows)) : 1.0;
  if (shrink < 1.0)
    cv::resize(bgr, out, {}, shrink, shrink, cv::INTER_AREA);
  else
    out = bgr.clone();
  if (!heatmap.empty()) {
    // Colour from blue (half the threshold) to red (twice it); below half the threshold, no tint.
    // Stretched as 8 bits: a float map at camera size would outweigh the image.
    cv::Mat u8, colored, alpha;
    heatmap.convertTo(u8, CV_8U, 255.0 / 1.5, -0.5 * 255.0 / 1.5);
    cv::threshold(u8, alpha, 0, 255, cv::THRESH_BINARY);  // heat > 0.5
    if (u8.size() != out.size()) {
      cv::resize(u8, u8, out.size(), 0, 0, cv::INTER_LINEAR);
      cv::resize(alpha, alpha, out.size(), 0, 0, cv::INTER_NEAREST);
    }
    cv::applyColorMap(u8, colored, cv::COLORMAP_JET);
    cv::addWeighted(out, 0.55, colored, 0.45, 0, colored);
    colored.copyTo(out, alpha);
  }
  // Boxes are in the result's pixels (the original image); the picture may be smaller.
  const double sx = r.width > 0 ? double(out.cols) / r.width : 1.0, sy = r.height > 0 ? double(out.rows) / r.height : 1.0;
  const int thick = std::max(2, std::min(out.cols, out.rows) / 250);
  const double font = std::max(0.6, std::min(out.cols, out.rows) / 900.0);
  for (const auto& o : r.objects) {
    if (!o.has_box) continue;
    cv::Scalar c = o.qc == "NOK" ? cv::Scalar(0, 0, 255) : cv::Scalar(0, 200, 0);
    const cv::Point p0(int(o.box.x_min * sx), int(o.box.y_min * sy)), p1(int(o.box.x_max * sx), int(o.box.y_max * sy));
    cv::rectangle(out, p0, p1, c, thick);
    char label[80];
    std::snprintf(label, sizeof label, "%s %.2f", o.name.c_str(), o.score.value_or(0));
    cv::putText(out, label, {p0.x, std::max(p0.y - 2 * thick, int(20 * font))},
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
