#include "engines/defect_names.h"

#include <cmath>

namespace zeroqc {
namespace {

std::vector<double> Unit(std::vector<double> v) {
  double n = 0;
  for (double x : v) n += x * x;
  n = std::sqrt(n);
  if (n > 0)
    for (double& x : v) x /= n;
  return v;
}

double Cosine(const std::vector<double>& a, const std::vector<double>& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) dot += a[i] * b[i], na += a[i] * a[i], nb += b[i] * b[i];
  return na > 0 && nb > 0 ? dot / std::sqrt(na * nb) : -1;
}

}  // namespace

void DefectNames::Add(const std::string& name, const std::vector<float>& d, int64_t id) {
  if (d.empty()) return;
  if (dim_ == 0) dim_ = d.size();
  if (d.size() != dim_) return;
  Entry& e = names_[name];
  if (e.sum.empty()) e.sum.assign(dim_, 0.0);
  for (size_t i = 0; i < dim_; ++i) e.sum[i] += d[i];
  e.ids.push_back(id);
}

std::optional<DefectNames::Match> DefectNames::Nearest(const std::vector<float>& d, double min_similarity) const {
  if (names_.empty() || d.size() != dim_) return std::nullopt;
  const std::vector<double> q(d.begin(), d.end());
  std::map<std::string, std::vector<double>> unit;
  std::vector<double> mean(dim_, 0.0);
  double best_plain = -2;
  for (const auto& [name, e] : names_) {
    unit[name] = Unit(e.sum);
    best_plain = std::max(best_plain, Cosine(unit[name], q));
    for (size_t i = 0; i < dim_; ++i) mean[i] += unit[name][i] / double(names_.size());
  }
  if (best_plain < min_similarity) return std::nullopt;
  const bool centre = names_.size() >= 2;
  std::vector<double> qc = q;
  if (centre)
    for (size_t i = 0; i < dim_; ++i) qc[i] -= mean[i];
  const std::string* best = nullptr;
  double best_sim = -2;
  for (const auto& [name, u] : unit) {
    std::vector<double> c = u;
    if (centre)
      for (size_t i = 0; i < dim_; ++i) c[i] -= mean[i];
    const double s = Cosine(c, qc);
    if (!best || s > best_sim) best_sim = s, best = &name;
  }
  return Match{*best, Cosine(unit.at(*best), q), names_.at(*best).ids};
}

}  // namespace zeroqc
