#include "engines/patch/knn.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <cblas.h>

namespace zeroqc {
namespace {

// Minimum of |q|^2 + |b|^2 - 2 q.b over bank rows [a, b), folded into best (squared distances).
void MinOverRows(const cv::Mat& q, const std::vector<float>& qn, const MemoryBank& bank, int a, int b,
                 std::vector<float>& best) {
  constexpr int kBlock = 4096;  // bounds the scratch product to n x 4096 floats
  const int n = q.rows, d = q.cols;
  std::vector<float> prod(static_cast<size_t>(n) * kBlock);
  for (int s = a; s < b; s += kBlock) {
    const int m = std::min(kBlock, b - s);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, d, -2.f, q.ptr<float>(), static_cast<int>(q.step1()),
                bank.rows.ptr<float>(s), static_cast<int>(bank.rows.step1()), 0.f, prod.data(), m);
    const float* bn = bank.sq_norms.ptr<float>(s);
    for (int i = 0; i < n; ++i) {
      const float* row = prod.data() + static_cast<size_t>(i) * m;
      float mn = best[i] - qn[i];
#pragma omp simd reduction(min : mn)  // lets the compiler vectorise the scan (-fopenmp-simd)
      for (int j = 0; j < m; ++j) mn = std::min(mn, row[j] + bn[j]);
      best[i] = mn + qn[i];
    }
  }
}

}  // namespace

std::vector<float> NearestDistances(const cv::Mat& queries, const MemoryBank& bank, int exclude) {
  cv::Mat q = queries.isContinuous() ? queries : queries.clone();
  std::vector<float> qn(q.rows), best(q.rows, std::numeric_limits<float>::max());
  for (int i = 0; i < q.rows; ++i) qn[i] = static_cast<float>(q.row(i).dot(q.row(i)));
  if (exclude >= 0 && exclude < static_cast<int>(bank.ranges.size())) {
    auto [a, b] = bank.ranges[exclude];
    MinOverRows(q, qn, bank, 0, a, best);
    MinOverRows(q, qn, bank, b, bank.rows.rows, best);
  } else {
    MinOverRows(q, qn, bank, 0, bank.rows.rows, best);
  }
  for (auto& v : best) v = std::sqrt(std::max(v, 0.f));
  return best;
}

}  // namespace zeroqc
