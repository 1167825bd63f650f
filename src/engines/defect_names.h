// Defect types named by example, nothing trained: each name's examples (region descriptors, see
// Engine::DescribeRegion) are averaged into one unit vector; a region is compared with every name.
// Used by the service (reviews name regions) and by `zeroqc bench --type-shots` alike.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace zeroqc {

class DefectNames {
 public:
  // Descriptors of another length than the first one added are ignored (another backbone).
  void Add(const std::string& name, const std::vector<float>& descriptor, int64_t example_id = 0);

  struct Match {
    std::string name;
    double similarity;          // cosine between the region and the name's mean example
    std::vector<int64_t> examples;  // the ids of the name's examples
  };
  // The name whose examples `descriptor` resembles most, if its best cosine to any name reaches
  // `min_similarity`. With two or more names the choice is made after centring (the mean of the
  // names' vectors subtracted from them and from the region): what all defects share (they are all
  // "not the good part") no longer pulls every region to the most central name. Centring took tire's
  // four types from 0.32 to 0.36 (one example each) and from 0.30 to 0.39 (five) with whole-image
  // region descriptors, docs/BENCHMARKS.md.
  std::optional<Match> Nearest(const std::vector<float>& descriptor, double min_similarity = -1) const;
  size_t size() const { return names_.size(); }

 private:
  struct Entry {
    std::vector<double> sum;
    std::vector<int64_t> ids;
  };
  std::map<std::string, Entry> names_;
  size_t dim_ = 0;
};

}  // namespace zeroqc
