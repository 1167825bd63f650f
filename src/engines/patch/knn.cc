#include "engines/patch/knn.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <cblas.h>

namespace zeroqc {
namespace {

// Minimum of |q|^2 + |b|^2 - 2 q.b over bank rows [a, b) in the column block [c, c + d), folded
// into best (squared distances). `bn` is the block's column of the bank's norms.
void MinOverRows(const cv::Mat& q, const std::vector<float>& qn, const MemoryBank& bank, int c, int d, int block,
                 int a, int b, std::vector<float>& best) {
  constexpr int kBlock = 4096;  // bounds the scratch product to n x 4096 floats
  const int n = q.rows;
  // Reused per thread: a fresh n x 4096 buffer per call cost more in page faults than the search.
  thread_local std::vector<float> prod, bn;
  const size_t need = static_cast<size_t>(n) * std::min(kBlock, std::max(0, b - a));
  if (prod.size() < need) prod.resize(need);
  if (bn.size() < size_t(kBlock)) bn.resize(kBlock);
  for (int s = a; s < b; s += kBlock) {
    const int m = std::min(kBlock, b - s);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, d, -2.f, q.ptr<float>() + c, static_cast<int>(q.step1()),
                bank.rows.ptr<float>(s) + c, static_cast<int>(bank.rows.step1()), 0.f, prod.data(), m);
    for (int j = 0; j < m; ++j) bn[j] = bank.sq_norms.at<float>(s + j, block);
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
  const auto blocks = bank.Blocks();
  std::vector<float> out(q.rows, 0.f);
  for (int k = 0, c = 0; k < int(blocks.size()); c += blocks[k++]) {
    std::vector<float> qn(q.rows), best(q.rows, std::numeric_limits<float>::max());
    for (int i = 0; i < q.rows; ++i) {
      cv::Mat part = q.row(i).colRange(c, c + blocks[k]);
      qn[i] = static_cast<float>(part.dot(part));
    }
    if (exclude >= 0 && exclude < static_cast<int>(bank.ranges.size())) {
      auto [a, b] = bank.ranges[exclude];
      MinOverRows(q, qn, bank, c, blocks[k], k, 0, a, best);
      MinOverRows(q, qn, bank, c, blocks[k], k, b, bank.rows.rows, best);
    } else {
      MinOverRows(q, qn, bank, c, blocks[k], k, 0, bank.rows.rows, best);
    }
    for (int i = 0; i < q.rows; ++i) out[i] += std::sqrt(std::max(best[i], 0.f)) / blocks.size();
  }
  return out;
}

}  // namespace zeroqc
