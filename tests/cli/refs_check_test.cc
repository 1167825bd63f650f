// `zeroqc refs check` end to end on the toothbrush set, whose pool holds 20 blue (000-019), 20 red
// (020-039) and 8 yellow (040-047) good brushes: the setup that rejected every yellow brush without
// a word must be flagged before any part is judged.
#include <gtest/gtest.h>

#include "cli/run_zeroqc.h"

namespace zeroqc {
namespace {

namespace fs = std::filesystem;
using testing::Zeroqc;

fs::path Toothbrush() { return testing::Datasets() / "mvtec-toothbrush"; }

// A reference folder of train/good brushes by number, plus extra files copied as they are.
// Inside `tmp`, the test's own folder (testing::TempDir empties it on every call).
fs::path Refs(const fs::path& tmp, const std::string& name, const std::vector<int>& good, const std::vector<fs::path>& extra = {}) {
  const fs::path dir = tmp / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (int n : good) {
    char f[16];
    std::snprintf(f, sizeof f, "%03d.png", n);
    fs::copy_file(Toothbrush() / "train/good" / f, dir / f);
  }
  for (const auto& e : extra) fs::copy_file(e, dir / ("zz_" + e.filename().string()));
  return dir;
}

bool Yellow(const std::string& file) {
  const int n = std::stoi(file.substr(0, 3));
  return n >= 40 && n <= 47;
}

nlohmann::json Check(const std::string& args, int* status) {
  auto r = Zeroqc("refs check --json " + args + testing::kCache);
  *status = r.status;
  EXPECT_TRUE(r.status == 0 || r.status == 1) << r.err;
  return nlohmann::json::parse(r.out);
}

TEST(RefsCheck, BlueAndRedReferencesAreFlaggedAgainstADaysParts) {
  REQUIRE_BACKBONE();
  int status = 0;
  const auto j = Check(Refs(testing::TempDir(), "blue-red", {3, 11, 24, 33}).string() + " --parts " + (Toothbrush() / "train/good").string(), &status);
  EXPECT_EQ(status, 1);
  EXPECT_EQ(j["verdict"], "add references like these") << j.dump(2);
  EXPECT_FALSE(j["ready"].get<bool>());
  int yellow_nok = 0;
  for (const auto& p : j["parts"]) yellow_nok += Yellow(p["file"]) && p["verdict"] == "NOK";
  EXPECT_GE(yellow_nok, 5) << j["parts"].dump();
  // The reason names the parts least like any reference first: the yellow ones.
  const std::string reason = j["reasons"][0];
  const auto first = reason.find("first: ");
  ASSERT_NE(first, std::string::npos) << reason;
  EXPECT_TRUE(Yellow(reason.substr(first + 7, 3))) << reason;
  EXPECT_EQ(j["groups"], 2) << "two blue and two red references are two look-alike groups";
}

TEST(RefsCheck, ReferencesThatCoverTheVariantsAreReady) {
  REQUIRE_BACKBONE();
  // What refs suggest --count 4 picks from this pool: one blue, two red and one yellow brush.
  int status = 0;
  const auto j = Check(Refs(testing::TempDir(), "covering", {11, 27, 35, 45}).string() + " --parts " + (Toothbrush() / "train/good").string(), &status);
  EXPECT_EQ(status, 0) << j.dump(2);
  EXPECT_EQ(j["verdict"], "ready");
  EXPECT_EQ(j["parts"].size(), 48u);
}

TEST(RefsCheck, ADefectivePhotoAmongTheReferencesIsNamed) {
  REQUIRE_BACKBONE();
  int status = 0;
  const auto j = Check(Refs(testing::TempDir(), "one-defective", {6, 10, 11, 18, 20, 22, 25, 27, 33, 42, 44, 45},
                            {Toothbrush() / "test/defective/010.png"})
                           .string(),
                       &status);
  EXPECT_EQ(status, 1);
  EXPECT_EQ(j["verdict"], "references disagree") << j.dump(2);
  for (const auto& r : j["references"])
    EXPECT_EQ(r["outlier"].get<bool>(), r["file"] == "zz_010.png") << r.dump();
}

TEST(RefsCheck, KnownPartsGiveTheConfusionMatrixAndTheBestThreshold) {
  REQUIRE_BACKBONE();
  int status = 0;
  const auto j = Check(Refs(testing::TempDir(), "labelled", {6, 10, 11, 18, 20, 22, 25, 27, 33, 42, 44, 45}).string() + " --good " +
                           (Toothbrush() / "test/good").string() + " --defective " + (Toothbrush() / "test/defective").string(),
                       &status);
  const auto& c = j["confusion"];
  EXPECT_EQ(c["tp"].get<int>() + c["fn"].get<int>(), 30);
  EXPECT_EQ(c["tn"].get<int>() + c["fp"].get<int>(), 12);
  EXPECT_GE(j["best_threshold"]["balanced_accuracy"].get<double>(), 0.9);
  EXPECT_GT(j["best_threshold"]["threshold"].get<double>(), 0);
  // Ready only when every known part was judged right.
  EXPECT_EQ(status == 0, c["fp"] == 0 && c["fn"] == 0) << j.dump(2);
  EXPECT_EQ(status == 0, j["verdict"] == "ready");
}

TEST(RefsCheck, OneReferenceAloneIsNotReady) {
  REQUIRE_BACKBONE();
  auto r = Zeroqc("refs check --quiet " + Refs(testing::TempDir(), "single", {11}).string() + testing::kCache);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.out.find("verdict: add references like these"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 reference:"), std::string::npos) << r.out;
}

TEST(RefsCheck, BadFoldersAreRefusedAndABadPartIsNamed) {
  REQUIRE_BACKBONE();
  const fs::path tmp = testing::TempDir(), empty = tmp / "empty";
  fs::create_directories(empty);
  auto r = Zeroqc("refs check " + empty.string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("holds no images"), std::string::npos) << r.err;
  const auto refs = Refs(tmp, "bad-input", {11, 27, 35, 45});
  r = Zeroqc("refs check --quiet " + refs.string() + " --parts " + (tmp / "no-such-folder").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--parts"), std::string::npos) << r.err;
  // A corrupt photo among the parts is named, and the others are still judged.
  const fs::path parts = tmp / "parts";
  fs::remove_all(parts);
  fs::create_directories(parts);
  fs::copy_file(Toothbrush() / "train/good/012.png", parts / "012.png");
  std::ofstream(parts / "broken.png") << "not a png";
  int status = 0;
  const auto j = Check(refs.string() + " --parts " + parts.string(), &status);
  ASSERT_EQ(j["parts"].size(), 2u);
  EXPECT_EQ(j["parts"][1]["file"], "broken.png");
  EXPECT_EQ(j["parts"][1]["verdict"], "error");
  EXPECT_EQ(j["parts"][0]["verdict"], "OK");
  EXPECT_NE(j["notes"].dump().find("broken.png could not be judged"), std::string::npos) << j.dump(2);
}

// The same blue and red references judging the yellow brushes: inspect says what it means.
TEST(RefsCheck, InspectWarnsWhenMostPartsAreRejected) {
  REQUIRE_BACKBONE();
  std::string yellow;
  for (int n = 40; n <= 47; ++n) yellow += " " + (Toothbrush() / "train/good" / ("0" + std::to_string(n) + ".png")).string();
  auto r = Zeroqc("inspect --quiet --refs " + Refs(testing::TempDir(), "blue-red", {3, 11, 24, 33}).string() + yellow + testing::kCache);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("the references miss how they look: zeroqc refs check"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace zeroqc
