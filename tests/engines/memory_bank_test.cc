#include "engines/patch/memory_bank.h"

#include <fstream>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "engines/patch/patch_engine.h"
#include "test_support.h"

namespace zeroqc {
namespace {

MemoryBank SmallBank() {
  MemoryBank bank;
  for (int r = 0; r < 2; ++r) {
    PatchGrid g;
    g.descriptors.create(6, 4, CV_32F);
    cv::randu(g.descriptors, 0, 1);
    g.grid_h = 2, g.grid_w = 3;
    bank.Add(g);
  }
  bank.UpdateNorms();
  bank.loo_scores = {1.5, 2.5};
  return bank;
}

TEST(MemoryBankFile, RoundTrips) {
  auto path = testing::TempDir() / "b.bank";
  MemoryBank bank = SmallBank();
  ASSERT_TRUE(bank.Save(path).ok());
  auto loaded = MemoryBank::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(cv::norm(loaded->rows, bank.rows, cv::NORM_INF), 0.0);
  EXPECT_EQ(loaded->ranges, bank.ranges);
  EXPECT_EQ(loaded->loo_scores, bank.loo_scores);
  EXPECT_EQ(loaded->grid_h, 2);
  EXPECT_EQ(loaded->grid_w, 3);
  EXPECT_EQ(cv::norm(loaded->sq_norms, bank.sq_norms, cv::NORM_INF), 0.0);
}

TEST(MemoryBankFile, CorruptFilesAreRefused) {
  auto dir = testing::TempDir();
  ASSERT_TRUE(SmallBank().Save(dir / "b.bank").ok());
  std::ifstream in(dir / "b.bank", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::ofstream(dir / "short.bank", std::ios::binary) << bytes.substr(0, bytes.size() - 8);
  EXPECT_EQ(MemoryBank::Load(dir / "short.bank").status().code(), Code::kCorrupt);
  std::ofstream(dir / "magic.bank", std::ios::binary) << "XXXX" << bytes.substr(4);
  EXPECT_EQ(MemoryBank::Load(dir / "magic.bank").status().code(), Code::kCorrupt);
  EXPECT_EQ(MemoryBank::Load(dir / "none.bank").status().code(), Code::kNotFound);
}

// Copies `n` toothbrush references into a fresh folder the test may modify.
std::vector<std::filesystem::path> CopyRefs(const std::filesystem::path& dir, int n) {
  std::vector<std::filesystem::path> out;
  for (int i = 0; i < n; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "%03d.png", i);
    auto to = dir / name;
    std::filesystem::copy_file(testing::Datasets() / "mvtec-toothbrush/train/good" / name, to);
    out.push_back(to);
  }
  return out;
}

TEST(MemoryBankCache, KeyFollowsContentsParametersAndBackbone) {
  REQUIRE_DATASETS();
  auto dir = testing::TempDir();
  auto refs = CopyRefs(dir, 3);
  PatchEngineOptions o;
  auto key = *MemoryBankKey("bb1", o, refs);
  EXPECT_EQ(*MemoryBankKey("bb1", o, {refs[2], refs[0], refs[1]}), key) << "order must not matter";
  EXPECT_NE(*MemoryBankKey("bb2", o, refs), key);
  PatchEngineOptions o2 = o;
  o2.patch.neighbourhood = 5;
  EXPECT_NE(*MemoryBankKey("bb1", o2, refs), key);
  o2 = o;
  o2.max_bank_rows = 100;
  EXPECT_NE(*MemoryBankKey("bb1", o2, refs), key);
  EXPECT_NE(*MemoryBankKey("bb1", o, {refs[0], refs[1]}), key);
  cv::Mat img = cv::imread(refs[1].string());
  img.at<cv::Vec3b>(10, 10) = {1, 2, 3};
  cv::imwrite(refs[1].string(), img);
  EXPECT_NE(*MemoryBankKey("bb1", o, refs), key) << "a changed reference must invalidate the bank";
}

TEST(MemoryBankCache, EngineReusesTheBankUntilAReferenceChanges) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  std::filesystem::create_directories(dir / "refs");
  auto refs = CopyRefs(dir / "refs", 3);
  PatchEngineOptions o;
  o.backbone_spec = testing::BackboneSpecPath();
  o.cache_dir = dir / "cache";

  auto first = PatchEngine::Create(o, refs);
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_FALSE((*first)->loaded_from_cache());
  EXPECT_TRUE(std::filesystem::exists((*first)->cache_file()));

  auto second = PatchEngine::Create(o, refs);
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE((*second)->loaded_from_cache());
  EXPECT_EQ((*second)->cache_file(), (*first)->cache_file());
  EXPECT_DOUBLE_EQ((*second)->threshold(), (*first)->threshold());

  std::filesystem::copy_file(testing::Datasets() / "mvtec-toothbrush/train/good/010.png", refs[2],
                             std::filesystem::copy_options::overwrite_existing);
  auto third = PatchEngine::Create(o, refs);
  ASSERT_TRUE(third.ok());
  EXPECT_FALSE((*third)->loaded_from_cache());
  EXPECT_NE((*third)->cache_file(), (*first)->cache_file());
}

}  // namespace
}  // namespace zeroqc
