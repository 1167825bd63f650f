#include "engines/patch/knn.h"
#include "engines/patch/mutual.h"

#include <algorithm>

#include <gtest/gtest.h>

namespace zeroqc {
namespace {

MemoryBank RandomBank(int refs, int rows_each, int dim, uint64_t seed) {
  MemoryBank bank;
  cv::RNG rng(seed);
  for (int r = 0; r < refs; ++r) {
    PatchGrid g;
    g.descriptors.create(rows_each, dim, CV_32F);
    rng.fill(g.descriptors, cv::RNG::NORMAL, 0, 1);
    g.grid_h = 1, g.grid_w = rows_each;
    bank.Add(g);
  }
  bank.UpdateNorms();
  return bank;
}

float Brute(const cv::Mat& q, const MemoryBank& bank, int skip_a, int skip_b) {
  double best = 1e30;
  for (int j = 0; j < bank.rows.rows; ++j)
    if (j < skip_a || j >= skip_b) best = std::min(best, cv::norm(q, bank.rows.row(j), cv::NORM_L2));
  return float(best);
}

TEST(Knn, MatchesBruteForceAcrossBlocks) {
  MemoryBank bank = RandomBank(3, 3000, 24, 7);  // > one 4096-row block
  cv::Mat q(50, 24, CV_32F);
  cv::RNG(9).fill(q, cv::RNG::NORMAL, 0, 1);
  auto d = NearestDistances(q, bank);
  for (int i = 0; i < q.rows; ++i) EXPECT_NEAR(d[i], Brute(q.row(i), bank, 0, 0), 1e-3) << i;
}

TEST(Knn, LayerBlocksFindTheirOwnNeighbourAndAverage) {
  MemoryBank bank = RandomBank(2, 300, 20, 5);
  bank.blocks = {8, 12};  // two layers, searched separately
  bank.UpdateNorms();
  cv::Mat q(30, 20, CV_32F);
  cv::RNG(11).fill(q, cv::RNG::NORMAL, 0, 1);
  auto d = NearestDistances(q, bank, 1);
  MemoryBank left = bank, right = bank;
  left.rows = bank.rows.colRange(0, 8).clone(), right.rows = bank.rows.colRange(8, 20).clone();
  for (int i = 0; i < q.rows; ++i) {
    const float a = Brute(q.row(i).colRange(0, 8), left, 300, 600), b = Brute(q.row(i).colRange(8, 20), right, 300, 600);
    EXPECT_NEAR(d[i], (a + b) / 2, 1e-3) << i;
  }
}

TEST(Knn, QueryInBankHasZeroDistanceUnlessLeftOut) {
  MemoryBank bank = RandomBank(3, 100, 16, 3);
  cv::Mat q = bank.rows.rowRange(100, 110).clone();  // rows of reference 1
  for (float v : NearestDistances(q, bank)) EXPECT_NEAR(v, 0.f, 1e-2);
  auto loo = NearestDistances(q, bank, 1);
  for (int i = 0; i < q.rows; ++i) {
    EXPECT_GT(loo[i], 1.f);
    EXPECT_NEAR(loo[i], Brute(q.row(i), bank, 100, 200), 1e-3);
  }
}

TEST(Knn, CoresetKeepsRatioPerReferenceAndCoversTheBank) {
  MemoryBank bank = RandomBank(4, 500, 32, 5);
  MemoryBank full = bank;
  CoresetSubsample(bank, 0.1);
  ASSERT_EQ(bank.ranges.size(), 4u);
  for (auto [a, b] : bank.ranges) EXPECT_EQ(b - a, 50);
  EXPECT_EQ(bank.rows.rows, 200);
  // Greedy k-centre beats a random subset of the same size at covering the dropped rows.
  MemoryBank random = full;
  random.rows = full.rows.rowRange(0, 200).clone();
  random.ranges = {{0, 200}};
  random.UpdateNorms();
  auto cov_k = NearestDistances(full.rows, bank), cov_r = NearestDistances(full.rows, random);
  EXPECT_LT(*std::max_element(cov_k.begin(), cov_k.end()), *std::max_element(cov_r.begin(), cov_r.end()));
}

TEST(Mutual, PeersAreOthersSpreadOverTheBatch) {
  auto p = Peers(3, 10, 0);
  EXPECT_EQ(p.size(), 9u);
  EXPECT_EQ(std::count(p.begin(), p.end(), 3), 0);
  for (int self : {0, 5, 39}) {
    p = Peers(self, 40, 8);
    EXPECT_EQ(p.size(), 8u);
    EXPECT_EQ(std::count(p.begin(), p.end(), self), 0);
    EXPECT_GE(p.back() - p.front(), 30) << "spread, not the neighbours only";
  }
  EXPECT_EQ(Peers(-1, 5, 8).size(), 5u);  // a new image: every batch image
}

TEST(Mutual, APatchSharedByFewPeersStillScoresHigh) {
  // Five peers; a query row equal to a row of one peer only (a defect seen twice in the batch).
  std::vector<MemoryBank> peers(5);
  cv::RNG rng(4);
  for (auto& b : peers) {
    PatchGrid g;
    g.descriptors.create(20, 6, CV_32F);
    rng.fill(g.descriptors, cv::RNG::NORMAL, 0, 1);
    g.grid_h = 1, g.grid_w = 20;
    b.Add(g);
    b.UpdateNorms();
  }
  cv::Mat q = peers[2].rows.rowRange(0, 1).clone();
  std::vector<const MemoryBank*> ptrs;
  for (auto& b : peers) ptrs.push_back(&b);
  const float nearest_only = MutualDistances(q, ptrs, 0.0)[0];
  const float mutual = MutualDistances(q, ptrs, 0.4)[0];
  EXPECT_NEAR(nearest_only, 0.f, 1e-3);
  std::vector<float> d;
  for (auto* b : ptrs) d.push_back(NearestDistances(q, *b)[0]);
  std::sort(d.begin(), d.end());
  EXPECT_NEAR(mutual, (d[0] + d[1]) / 2, 1e-4) << "the mean of the closest 40% of 5 peers";
  EXPECT_GT(mutual, 0.5f);
  // The same rare patch, but the peer that has it is the references (the anchor): it is normal.
  EXPECT_NEAR(MutualDistances(q, ptrs, 0.4, 2)[0], 0.f, 1e-3);
  EXPECT_NEAR(MutualDistances(q, ptrs, 0.4, 0)[0], mutual, 1e-6) << "an anchor that lacks it changes nothing";
}

}  // namespace
}  // namespace zeroqc
