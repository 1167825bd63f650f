#include "core/result.h"

#include <gtest/gtest.h>

namespace zeroqc {
namespace {

TEST(ResultJson, HasTheReferenceSchemaAndZeroqcFields) {
  InspectionResult r;
  r.image_path = "a.png";
  r.width = 640;
  r.height = 480;
  r.text = "NOK: 1 region";
  r.verdict = "NOK";
  r.score = 3.5;
  r.threshold = 2.5;
  r.engine = "patch";
  r.timing_ms = 12.5;
  r.objects.push_back({"anomaly", "red", "NOK", "differs", {10, 20, 30, 40}, 3.5});
  auto j = ToJson(r);
  EXPECT_EQ(j["text"], "NOK: 1 region");
  ASSERT_EQ(j["objects"].size(), 1u);
  const auto& o = j["objects"][0];
  for (const char* k : {"name", "color", "qc", "reason", "bounding_box"}) EXPECT_TRUE(o.contains(k)) << k;
  EXPECT_EQ(o["qc"], "NOK");
  EXPECT_EQ(o["bounding_box"]["x_min"], 10);
  EXPECT_EQ(o["bounding_box"]["y_min"], 20);
  EXPECT_EQ(o["bounding_box"]["x_max"], 30);
  EXPECT_EQ(o["bounding_box"]["y_max"], 40);
  EXPECT_EQ(j["verdict"], "NOK");
  EXPECT_DOUBLE_EQ(j["score"].get<double>(), 3.5);
  EXPECT_DOUBLE_EQ(j["threshold"].get<double>(), 2.5);
  EXPECT_EQ(j["engine"], "patch");
  EXPECT_EQ(j["image"]["path"], "a.png");
  EXPECT_EQ(j["image"]["width"], 640);
  EXPECT_EQ(j["image"]["height"], 480);
  EXPECT_DOUBLE_EQ(j["timing_ms"].get<double>(), 12.5);
  EXPECT_FALSE(j.contains("error"));
}

TEST(ResultJson, ErrorResultHasNoVerdictAndSaysWhy) {
  InspectionResult r;
  r.image_path = "broken.png";
  r.engine = "patch";
  r.error = "the png data is truncated or corrupt";
  auto j = ToJson(r);
  EXPECT_EQ(j["error"], "the png data is truncated or corrupt");
  EXPECT_TRUE(j["verdict"].is_null());
  EXPECT_TRUE(j["objects"].empty());
  EXPECT_NE(j["text"].get<std::string>().find("not inspected"), std::string::npos);
}

}  // namespace
}  // namespace zeroqc
