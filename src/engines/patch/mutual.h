// Zero-shot mutual scoring (after MuSc, arXiv 2401.16753): in a batch of unlabelled parts most are
// good, and a defect rarely repeats at the same look across parts, while a normal patch always
// does. Each image's patches are matched against other images of the batch, one at a time.
#pragma once

#include <vector>

#include "engines/patch/memory_bank.h"

namespace zeroqc {

// The peers of image `self` in a batch of `n`: up to `count` other images spread evenly over the
// batch (the same for the same arguments).
std::vector<int> Peers(int self, int n, int count);

// For every row of `query`: its nearest-patch distance to each bank in `peers` (one bank per peer
// image, see MemoryBank), sorted, and the mean of the lowest `fraction` of them (at least one). A
// patch that only a few peers share, like a defect seen twice in a batch, still scores high.
// `anchor` (a peer's index, or -1): a peer known to be good, the references; a patch it matches
// scores no higher than its distance to it, however rare that look is among the other peers.
std::vector<float> MutualDistances(const cv::Mat& query, const std::vector<const MemoryBank*>& peers, double fraction,
                                   int anchor = -1);

}  // namespace zeroqc
