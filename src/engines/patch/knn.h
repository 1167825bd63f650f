// Exact nearest-neighbour distances from query patches to a memory bank, by matrix products.
#pragma once

#include <vector>

#include "engines/patch/memory_bank.h"

namespace zeroqc {

// For every query row, the Euclidean distance to its nearest bank row, skipping the rows of
// reference `exclude` (leave-one-out) when it is >= 0. Uses |q|^2 + |b|^2 - 2 q.b in blocks.
// With column blocks (bank.blocks: one per layer) each block finds its own nearest row and the
// distances are averaged over the blocks.
std::vector<float> NearestDistances(const cv::Mat& queries, const MemoryBank& bank, int exclude = -1);

}  // namespace zeroqc
