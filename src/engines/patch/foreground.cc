#include "engines/patch/foreground.h"

#include <opencv2/imgproc.hpp>

namespace zeroqc {
namespace {

constexpr int kMaxRows = 20000;  // enough rows for one direction in 128 dimensions

// Projections of the deepest layer's block of `descriptors` on the direction, as a grid:
// (x - mean) . v, computed as x . v - mean . v so that no centred copy of the rows is made.
cv::Mat Projection(const cv::Mat& direction, const cv::Mat& descriptors, int grid_h) {
  const int w = direction.cols;
  cv::Mat p = descriptors.colRange(descriptors.cols - w, descriptors.cols) * direction.row(1).t();
  p -= direction.row(0).dot(direction.row(1));
  return p.reshape(1, grid_h);
}

}  // namespace

cv::Mat ForegroundDirection(const std::vector<cv::Mat>& grids, int width, int grid_h, int grid_w) {
  // Every k-th row of every image, at most kMaxRows in all.
  size_t total = 0;
  for (const auto& g : grids) total += g.rows;
  const int step = int(std::max<size_t>(1, (total + kMaxRows - 1) / kMaxRows));
  cv::Mat sample;
  for (const auto& g : grids)
    for (int r = 0; r < g.rows; r += step) sample.push_back(g.row(r).colRange(g.cols - width, g.cols));
  cv::PCA pca(sample, cv::noArray(), cv::PCA::DATA_AS_ROW, 1);
  cv::Mat direction(2, width, CV_32F);
  pca.mean.convertTo(direction.row(0), CV_32F);
  pca.eigenvectors.row(0).convertTo(direction.row(1), CV_32F);
  const cv::Mat p = Projection(direction, grids.front(), grid_h);
  cv::Mat centre = cv::Mat::zeros(grid_h, grid_w, CV_8U);
  centre(cv::Range(grid_h / 4, grid_h - grid_h / 4), cv::Range(grid_w / 4, grid_w - grid_w / 4)) = 1;
  if (cv::mean(p, centre)[0] < cv::mean(p, centre == 0)[0]) direction.row(1) *= -1;
  return direction;
}

void MaskBackground(const cv::Mat& direction, const cv::Mat& descriptors, int grid_h, int grid_w,
                    std::vector<float>& d) {
  cv::Mat fg = Projection(direction, descriptors, grid_h) > 0;
  if (cv::countNonZero(fg) == 0) return;
  cv::dilate(fg, fg, cv::Mat::ones(5, 5, CV_8U));
  for (int i = 0; i < grid_h * grid_w; ++i)
    if (!fg.data[i]) d[i] = 0;
}

}  // namespace zeroqc
