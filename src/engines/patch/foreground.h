// A label-free foreground mask: which patches show the part and which the background around it,
// so that background clutter and the part's position stop scoring as defects (AnomalyDINO masks
// the same way). Off by default: on a product that fills the frame (a texture), the split falls
// inside the part and would hide half of its defects (docs/BENCHMARKS.md).
#pragma once

#include <opencv2/core.hpp>
#include <vector>

namespace zeroqc {

// The first principal direction of the deepest layer's descriptors (the last `width` columns)
// over all rows of `grids` (one descriptor matrix per image, grid_h x grid_w rows each):
// row 0 of the result is the mean, row 1 the direction, oriented so that the centre of the first
// image (its middle half in both axes) projects higher than its border: parts are photographed
// in the middle of the frame. REQUIRES: !grids.empty(), every matrix CV_32F with >= width columns.
cv::Mat ForegroundDirection(const std::vector<cv::Mat>& grids, int width, int grid_h, int grid_w);

// Sets the distances of background patches to 0: a patch is foreground when its projection on
// the direction is positive, or when it lies within 2 patches of one that is (the part's outline
// and a defect on its edge stay in). With no foreground patch at all, nothing is masked.
void MaskBackground(const cv::Mat& direction, const cv::Mat& descriptors, int grid_h, int grid_w,
                    std::vector<float>& distances);

}  // namespace zeroqc
