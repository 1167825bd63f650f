// Where tests find the shared datasets, the converted backbone and the zeroqc binary.
#pragma once

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace zeroqc::testing {

inline std::filesystem::path SourceDir() { return ZEROQC_SOURCE_DIR; }
inline std::filesystem::path BinaryDir() { return ZEROQC_BINARY_DIR; }
inline std::filesystem::path Datasets() { return SourceDir() / ".." / "shared" / "datasets"; }
inline std::filesystem::path BackboneSpecPath() { return BinaryDir() / "models" / "inception_v3.json"; }
inline std::filesystem::path ZeroqcBinary() { return BinaryDir() / "zeroqc"; }

// A fresh, empty folder under the system temp dir, named after the running test.
inline std::filesystem::path TempDir() {
  auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  auto dir = std::filesystem::temp_directory_path() / "zeroqc-tests" /
             (std::string(info->test_suite_name()) + "." + info->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace zeroqc::testing

// Skips the test, with the reason, when the shared datasets are not beside the repo.
#define REQUIRE_DATASETS()                                                                  \
  if (!std::filesystem::exists(::zeroqc::testing::Datasets()))                              \
  GTEST_SKIP() << "../shared/datasets not found beside the repo: dataset tests are skipped"

// Fails (not skips) when setup.sh has not converted the backbone: CI must always have it.
#define REQUIRE_BACKBONE()                                                                            \
  ASSERT_TRUE(std::filesystem::exists(::zeroqc::testing::BackboneSpecPath()))                         \
      << "no converted backbone at " << ::zeroqc::testing::BackboneSpecPath() << ": run ./setup.sh"
