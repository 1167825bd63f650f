// Runs the built zeroqc binary as a user would: arguments, exit statuses, JSON Lines, overlays.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/run_zeroqc.h"

namespace zeroqc {
namespace {

using testing::Lines;
using testing::Zeroqc;
using testing::kCache;

std::string Refs(const std::filesystem::path& dir) {  // 3 good references, copied
  std::filesystem::create_directories(dir);
  for (const char* n : {"000.png", "001.png", "002.png"})
    std::filesystem::copy_file(testing::Datasets() / "mvtec-toothbrush/train/good" / n, dir / n);
  return dir.string();
}

TEST(Cli, BadArgumentsExitWithTwo) {
  EXPECT_EQ(Zeroqc("inspect x.png").status, 2);  // no --refs
  EXPECT_EQ(Zeroqc("frobnicate").status, 2);
  auto dir = testing::TempDir();
  std::filesystem::create_directories(dir / "empty");
  auto r = Zeroqc("inspect --refs " + (dir / "empty").string() + " x.png");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("add photos of good parts"), std::string::npos) << r.err;
  r = Zeroqc("inspect --refs /nonexistent/refs x.png");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("not a folder"), std::string::npos) << r.err;
}

// Backbones by name: the shipped ones run (the default is lite2), an unknown name lists them.
// Each subcommand's --help lists only the flags it uses, and a flag it would ignore is refused.
TEST(Cli, EachSubcommandShowsAndTakesOnlyItsOwnFlags) {
  struct Case {
    std::string command;
    std::vector<std::string> has, lacks;
  };
  const std::vector<Case> cases = {
      {"demo", {"--backbone", "--threshold"}, {"--provider", "--explain-nok", "--model", "--peers", "--line-window"}},
      {"inspect", {"--engine", "--provider", "--low", "--line-window"}, {"--scope", "--draw"}},
      {"bench", {"--shots", "--draw", "--provider"}, {"--scope", "--parts"}},
      {"refs suggest", {"--from", "--count", "--backbone"}, {"--provider", "--threshold", "--line-window"}},
      {"refs check", {"--parts", "--good", "--defective", "--json"}, {"--provider", "--threshold", "--line-window"}},
      {"keys create", {"--scope"}, {"--backbone", "--provider"}},
  };
  for (const auto& c : cases) {
    auto r = Zeroqc(c.command + " --help");
    EXPECT_EQ(r.status, 0) << c.command;
    for (const auto& f : c.has) EXPECT_NE(r.out.find(f), std::string::npos) << c.command << " lacks " << f;
    for (const auto& f : c.lacks) EXPECT_EQ(r.out.find(f + " "), std::string::npos) << c.command << " shows " << f;
  }
  auto r = Zeroqc("demo --provider ollama --explain-nok");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--provider"), std::string::npos) << r.err;
}

TEST(Cli, BackbonesAreChosenByName) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto refs = Refs(dir / "refs");
  const auto part = (testing::Datasets() / "mvtec-toothbrush/test/defective/010.png").string();
  auto r = Zeroqc("inspect --refs " + refs + " --backbone resnet " + part);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("no backbone named 'resnet'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("inception, lite0, lite1, lite2"), std::string::npos) << r.err;
  for (const char* name : {"lite0", "inception", ""}) {
    r = Zeroqc("inspect --refs " + refs + kCache + (*name ? std::string(" --backbone ") + name : "") + " " + part);
    ASSERT_EQ(r.status, 0) << name << ": " << r.err;
    auto lines = Lines(r.out);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0]["verdict"], "NOK") << name << ": " << lines[0].dump();
    EXPECT_EQ(lines[0]["calibration"], "references");
  }
}

TEST(Cli, InspectPrintsJsonLinesAndOverlays) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto refs = Refs(dir / "refs");
  auto t = testing::Datasets() / "mvtec-toothbrush/test";
  auto r = Zeroqc("inspect --refs " + refs + kCache + " --overlay " + (dir / "ov").string() + " " +
                  (t / "good/000.png").string() + " " + (t / "defective/010.png").string());
  ASSERT_EQ(r.status, 0) << r.err;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& j : lines) {
    for (const char* k : {"text", "objects", "verdict", "score", "threshold", "engine", "image", "timing_ms"})
      EXPECT_TRUE(j.contains(k)) << k << " in " << j.dump();
    EXPECT_EQ(j["engine"], "patch");
    EXPECT_EQ(j["image"]["width"], 1024);
  }
  EXPECT_EQ(lines[1]["verdict"], "NOK");
  EXPECT_FALSE(lines[1]["objects"].empty());
  EXPECT_TRUE(std::filesystem::exists(dir / "ov" / "000_overlay.jpg"));
  EXPECT_TRUE(std::filesystem::exists(dir / "ov" / "010_overlay.jpg"));
}

TEST(Cli, AFailedImageExitsWithThreeAndKeepsTheOthers) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto refs = Refs(dir / "refs");
  std::ofstream(dir / "corrupt.jpg") << "\xFF\xD8\xFF\xE0 this is not a jpeg";
  std::ofstream(dir / "notes.txt") << "hello";
  auto good = testing::Datasets() / "mvtec-toothbrush/test/good/001.png";
  auto r = Zeroqc("inspect --refs " + refs + kCache + " " + (dir / "corrupt.jpg").string() + " " + good.string() +
                  " " + (dir / "notes.txt").string() + " " + (dir / "missing.png").string());
  EXPECT_EQ(r.status, 3);
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_TRUE(lines[0].contains("error"));
  EXPECT_TRUE(lines[0]["verdict"].is_null());
  EXPECT_FALSE(lines[1].contains("error"));
  EXPECT_TRUE(lines[1]["verdict"] == "OK" || lines[1]["verdict"] == "NOK");
  EXPECT_NE(lines[2]["error"].get<std::string>().find("not a PNG, JPEG"), std::string::npos);
  EXPECT_NE(lines[3]["error"].get<std::string>().find("missing.png"), std::string::npos);
}

TEST(Cli, PixelLimitRefusesLargeImages) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto refs = Refs(dir / "refs");
  auto img = testing::Datasets() / "mvtec-toothbrush/test/good/000.png";  // 1024 x 1024
  auto r = Zeroqc("inspect --refs " + refs + kCache + " --max-pixels 1000000 " + img.string());
  EXPECT_EQ(r.status, 3);
  auto j = Lines(r.out).at(0);
  EXPECT_NE(j["error"].get<std::string>().find("exceed the limit of 1000000 pixels"), std::string::npos) << j.dump();
  EXPECT_EQ(Zeroqc("inspect --refs " + refs + kCache + " --max-pixels 1100000 " + img.string()).status, 0);
}

TEST(Cli, ProductFileOverridesTheThreshold) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto refs = Refs(dir / "refs");
  std::ofstream(dir / "refs" / "zeroqc.json") << R"({"threshold": 1000})";
  auto img = testing::Datasets() / "mvtec-toothbrush/test/defective/010.png";
  auto r = Zeroqc("inspect --refs " + refs + kCache + " " + img.string());
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = Lines(r.out).at(0);
  EXPECT_DOUBLE_EQ(j["threshold"].get<double>(), 1000);
  EXPECT_EQ(j["verdict"], "OK");
  for (const char* bad : {R"({"threshold": "high"})", R"({"threshold": 0})", R"({"threshold_sigmas": -1})", "[1]"}) {
    std::ofstream(dir / "refs" / "zeroqc.json") << bad;
    auto rb = Zeroqc("inspect --refs " + refs + kCache + " " + img.string());
    EXPECT_EQ(rb.status, 2) << bad;
    EXPECT_NE(rb.err.find("zeroqc.json"), std::string::npos) << rb.err;
  }
}

TEST(Cli, DemoWritesResultsAndOverlays) {
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto r = Zeroqc("demo" + kCache + " --data " + (testing::SourceDir() / "demo/aws-nova-samples").string() +
                  " --out " + dir.string());
  ASSERT_EQ(r.status, 0) << r.err;
  auto lines = Lines(r.out);
  EXPECT_EQ(lines.size(), 18u);  // 8 defective parts + 2 good parts for each of the 5 products
  // It ends with its score, and the good parts it made are there to look at.
  EXPECT_NE(r.err.find("/8 defects, "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("/10 false alarms"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir / "good-parts" / "metalplate_good2.jpg"));
  int caught = 0, alarms = 0;
  for (const auto& l : lines) {
    const std::string path = l["image"]["path"];
    (path.find("_nok") != std::string::npos ? caught : alarms) += l["verdict"] == "NOK";
  }
  const std::string score = "caught " + std::to_string(caught) + "/8 defects, " + std::to_string(alarms) + "/10 false alarms";
  EXPECT_NE(r.err.find(score), std::string::npos) << score << " in " << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir / "results.jsonl"));
  EXPECT_NE(r.err.find("results.jsonl"), std::string::npos);
  int overlays = 0;
  for (auto& e : std::filesystem::directory_iterator(dir / "overlays")) overlays += e.path().extension() == ".jpg";
  EXPECT_EQ(overlays, 18);
}

TEST(Cli, SigmasFlagWinsOverTheProductFile) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto refs = Refs(dir / "refs");
  std::ofstream(dir / "refs" / "zeroqc.json") << R"({"threshold_sigmas": 40})";
  auto img = (testing::Datasets() / "mvtec-toothbrush/test/good/000.png").string();
  auto from_file = Zeroqc("inspect --refs " + refs + kCache + " " + img);
  auto from_flag = Zeroqc("inspect --refs " + refs + kCache + " --sigmas 0 " + img);
  ASSERT_EQ(from_file.status, 0) << from_file.err;
  ASSERT_EQ(from_flag.status, 0) << from_flag.err;
  const double t_file = Lines(from_file.out)[0]["threshold"].get<double>();
  const double t_flag = Lines(from_flag.out)[0]["threshold"].get<double>();
  EXPECT_LT(t_flag, t_file) << "--sigmas 0 must beat the file's 40";
}

// Issue 14: the bank build says what it does. stderr is a file here, so the plain-line mode is
// what prints: each stage's start and its end with the count and duration; --quiet silences it.
TEST(Cli, TheBankBuildPrintsProgressUnlessQuiet) {
  REQUIRE_DATASETS();
  REQUIRE_BACKBONE();
  auto dir = testing::TempDir();
  auto refs = Refs(dir / "refs");
  const std::string img = (testing::Datasets() / "mvtec-toothbrush/test/defective/000.png").string();
  const std::string cache = " --cache " + (dir / "cache").string();
  auto r = Zeroqc("inspect --refs " + refs + cache + " " + img);
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* line : {"describing references: 0/3\n", "describing references: 3/3 done in ", "calibrating: 0/3\n",
                           "calibrating: 3/3 done in "})
    EXPECT_NE(r.err.find(line), std::string::npos) << "missing '" << line << "' in:\n" << r.err;
  EXPECT_EQ(r.err.find("\r"), std::string::npos) << "no carriage returns off a terminal";
  EXPECT_EQ(Lines(r.out).size(), 1u) << "progress stays off stdout";

  r = Zeroqc("inspect --refs " + refs + cache + " " + img);  // the bank is cached now
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("memory bank loaded from the cache"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("describing references"), std::string::npos) << r.err;

  r = Zeroqc("inspect --quiet --no-cache --refs " + refs + " " + img);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "") << "--quiet: nothing on stderr";
  EXPECT_EQ(Lines(r.out).size(), 1u);
}

}  // namespace
}  // namespace zeroqc

namespace zeroqc::testing {
namespace {

// Issue 28: a key's scope is always chosen; keys can be listed and revoked from the data folder.
TEST(Cli, KeysNeedAScopeAndCanBeListedAndRevoked) {
  auto dir = TempDir();
  const std::string data = " --data " + (dir / "data").string();
  auto r = Zeroqc("keys create --name camera" + data);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--scope is required"), std::string::npos) << r.err;
  ASSERT_EQ(Zeroqc("keys create --scope admin --name ana" + data).status, 0);
  r = Zeroqc("keys create --scope write --name 'line 3'" + data);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string key = r.out.substr(0, r.out.find('\n'));
  EXPECT_EQ(key.rfind("zq_", 0), 0u) << key;
  r = Zeroqc("keys list" + data);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("line 3"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(key), std::string::npos) << "never the key itself";
  r = Zeroqc("keys revoke 2" + data);
  ASSERT_EQ(r.status, 0) << r.err;
  r = Zeroqc("keys revoke 2" + data);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("no key 2 in use"), std::string::npos) << r.err;
  r = Zeroqc("keys revoke 1" + data);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("last admin key"), std::string::npos) << r.err;
  r = Zeroqc("keys list" + data);
  const size_t at = r.out.find("line 3");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string line = r.out.substr(r.out.rfind('\n', at) + 1, at - r.out.rfind('\n', at) - 1);
  EXPECT_EQ(line.find(" - "), std::string::npos) << "revoked, with its time: " << line;
  EXPECT_EQ(std::count(line.begin(), line.end(), 'Z'), 2) << "made and revoked: " << line;
}

}  // namespace
}  // namespace zeroqc::testing
