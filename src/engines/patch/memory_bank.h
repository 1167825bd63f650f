// Patch descriptors and the memory bank of patches from reference images of good parts.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "core/status.h"
#include "features/backbone.h"

namespace zeroqc {

struct PatchOptions {
  int neighbourhood = 3;  // local average over k x k patches before matching (PatchCore-style)
  int layer_dim = 128;    // channels of each layer after adaptive channel averaging (0: keep all)
};

// One image's patch descriptors on a grid: rows = grid_h * grid_w patches, row-major, CV_32F.
// The columns are one block per backbone layer (`blocks` holds their widths), each block
// L2-normalised: layers are matched separately with cosine distance, and their distances averaged.
struct PatchGrid {
  cv::Mat descriptors;
  int grid_h = 0, grid_w = 0;
  std::vector<int> blocks;
};

// Aggregates the neighbourhood of every patch, resizes all layers to the finest layer's grid,
// reduces channels, L2-normalises each layer's part and concatenates them into one row per patch.
PatchGrid MakePatchGrid(const std::vector<FeatureMap>& maps, const PatchOptions& opt);

// Rows from several reference images; `ranges[i]` is the half-open row range of reference i
// (coreset subsampling keeps rows grouped by reference, so leave-one-out stays possible).
struct MemoryBank {
  cv::Mat rows;        // M x D, CV_32F
  std::vector<int> blocks;  // column widths of the layers, searched separately; empty: one block
  cv::Mat sq_norms;    // M x blocks, |row block|^2
  std::vector<std::pair<int, int>> ranges;
  int grid_h = 0, grid_w = 0;
  std::vector<double> loo_scores;  // leave-one-out image scores of the references
  double threshold = 0;            // calibrated from loo_scores
  cv::Mat foreground;              // 2 x W (ForegroundDirection) when the foreground mask is on

  void Add(const PatchGrid& g);  // appends one reference
  // Appends several at once: one copy of every row (one by one copies the bank each time).
  void Add(const std::vector<PatchGrid>& grids);
  void UpdateNorms();
  // The column blocks, at least one (all columns).
  std::vector<int> Blocks() const { return blocks.empty() ? std::vector<int>{rows.cols} : blocks; }

  Status Save(const std::filesystem::path& path) const;
  static StatusOr<MemoryBank> Load(const std::filesystem::path& path);
};

// Greedy k-centre coreset: keeps `ratio` of each reference's rows, chosen so that every dropped
// row is close to a kept one. Distances are computed on a fixed random projection to `dims`
// dimensions (fewer: a faster choice, a little less faithful).
void CoresetSubsample(MemoryBank& bank, double ratio, uint64_t seed = 0, int dims = 128);

}  // namespace zeroqc
