#include "bench/types.h"

#include <algorithm>
#include <map>
#include <random>

#include "engines/defect_names.h"

namespace zeroqc {

nlohmann::json NameTypes(const Dataset& d, const std::vector<Record>& recs, int shots, uint64_t seed) {
  std::map<std::string, std::vector<size_t>> by_type;  // record indices of defective images with a descriptor
  for (size_t i = 0; i < recs.size(); ++i) {
    const Sample& s = d.samples[recs[i].sample];
    if (s.nok && !recs[i].descriptor.empty()) by_type[s.type].push_back(i);
  }
  if (by_type.size() < 2 || shots < 1) return nullptr;
  std::mt19937_64 rng(seed * 1000003 + 17);  // apart from the draw of references
  DefectNames names;
  std::vector<std::pair<size_t, std::string>> queries;
  for (auto& [type, idx] : by_type) {
    std::shuffle(idx.begin(), idx.end(), rng);
    const size_t n = std::min(idx.size(), size_t(shots));
    for (size_t k = 0; k < n; ++k) {
      const Record& e = recs[idx[k]];
      names.Add(type, e.example_descriptor.empty() ? e.descriptor : e.example_descriptor);
    }
    for (size_t k = n; k < idx.size(); ++k) queries.emplace_back(idx[k], type);
  }
  std::map<std::string, std::pair<int, int>> tally;  // type: correct, named
  int correct = 0;
  for (const auto& [i, truth] : queries) {
    const auto m = names.Nearest(recs[i].descriptor);
    auto& t = tally[truth];
    ++t.second;
    if (m && m->name == truth) ++t.first, ++correct;
  }
  nlohmann::json per_type = nlohmann::json::object();
  for (const auto& [type, t] : tally) per_type[type] = {{"accuracy", double(t.first) / t.second}, {"named", t.second}};
  return {{"accuracy", queries.empty() ? nlohmann::json(nullptr) : nlohmann::json(double(correct) / queries.size())},
          {"chance", 1.0 / names.size()},
          {"named", queries.size()},
          {"examples_per_type", shots},
          {"per_type", per_type}};
}

}  // namespace zeroqc
