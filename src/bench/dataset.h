// Benchmark datasets in the MVTec AD layout, and seeded K-shot draws from their reference pool.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/status.h"

namespace zeroqc {

struct Sample {
  std::filesystem::path image;
  std::string type;            // the test sub-folder: "good" or a defect type
  bool nok = false;            // type != "good"
  std::filesystem::path mask;  // ground_truth/<type>/<stem>_mask.png, empty when absent
};

struct Dataset {
  std::filesystem::path root;
  std::vector<std::filesystem::path> pool;  // train/good: the reference pool, never scored
  std::vector<Sample> samples;              // test/<type>/*, sorted by type then name
  bool has_masks() const;
};

// Reads `root` laid out as train/good/*, test/<good|defect type>/*, ground_truth/<type>/NNN_mask.png.
// Errors name the folder that is missing or empty.
StatusOr<Dataset> LoadDataset(const std::filesystem::path& root);

// The next number of a splitmix64 stream: seeded draws that are the same on every machine.
uint64_t SplitMix64(uint64_t& state);

// Shuffles `v` in a seeded order that is the same on every machine (Fisher-Yates on SplitMix64).
template <class T>
void SeededShuffle(std::vector<T>& v, uint64_t seed) {
  uint64_t state = seed;
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[SplitMix64(state) % i]);
}

// K references drawn without replacement from `pool`, the same for the same seed on every machine
// (Fisher-Yates on a splitmix64 stream, not std::shuffle, whose algorithm is unspecified).
// Returned sorted. k >= pool.size() returns the whole pool.
std::vector<std::filesystem::path> DrawShots(const std::vector<std::filesystem::path>& pool, size_t k,
                                             uint64_t seed);

// The test set in a line's proportions: every good sample and a seeded draw of the defective ones
// (the same on every machine), so that defects are `share` of the samples (rounded, at least one).
// Test folders are mostly defects; methods that learn from the parts they see (the line window,
// zero-shot) must also be measured on streams that are mostly good. Order as in `d`.
StatusOr<Dataset> WithDefectShare(const Dataset& d, double share, uint64_t seed);

}  // namespace zeroqc
