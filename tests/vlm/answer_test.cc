// Tolerant, bounded parsing of model answers and the box conventions.
#include "vlm/answer.h"

#include <gtest/gtest.h>

namespace zeroqc {
namespace {

StatusOr<ModelAnswer> Parse(const std::string& text) {
  auto j = ExtractJson(text);
  if (!j.ok()) return j.status();
  return ParseAnswer(*j);
}

TEST(Answer, PlainFencedAndWrappedInProse) {
  const std::string json = R"({"text":"ok","objects":[{"name":"part","color":"grey","qc":"OK","reason":"as reference","bounding_box":{"x_min":1,"y_min":2,"x_max":3,"y_max":4}}]})";
  for (const std::string& t : {json, "```json\n" + json + "\n```", "Here is my assessment:\n" + json + "\nLet me know if you need more.",
                               "```\n" + json + "```"}) {
    auto a = Parse(t);
    ASSERT_TRUE(a.ok()) << t << ": " << a.status().message();
    ASSERT_EQ(a->objects.size(), 1u);
    EXPECT_EQ(a->objects[0].object.qc, "OK");
    EXPECT_EQ(*a->objects[0].raw_box, (std::vector<double>{1, 2, 3, 4}));
  }
}

TEST(Answer, SingleQuotedPseudoJsonAsInTheReferenceDesign) {
  // Python-style: single quotes, an apostrophe inside a word, True/None, trailing commas.
  auto a = Parse(R"({'text': 'The toothbrush's bristles are bent.', 'objects': [{'name': 'bristles', 'color': 'white',
      'qc': 'NOK', 'reason': 'bent "outward" at the tip', 'bounding_box': {'x_min': 410, 'y_min': 220, 'x_max': 590, 'y_max': 380,},
      'visible': True, 'note': None,},],})");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->text, "The toothbrush's bristles are bent.");
  EXPECT_EQ(a->objects[0].object.reason, "bent \"outward\" at the tip");
  EXPECT_EQ(a->objects[0].object.qc, "NOK");
  EXPECT_TRUE(a->objects[0].box_named);
}

TEST(Answer, LooseValuesAreNormalised) {
  auto a = Parse(R"({"objects":[{"name":"dent","qc":"fail","bounding_box":["10","20",30,40]},{"name":"ok part","qc":"Pass"}]})");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->objects[0].object.qc, "NOK");
  EXPECT_FALSE(a->objects[0].box_named);
  EXPECT_EQ(*a->objects[0].raw_box, (std::vector<double>{10, 20, 30, 40}));
  EXPECT_EQ(a->objects[1].object.qc, "OK");
  EXPECT_FALSE(a->objects[1].raw_box);
  EXPECT_EQ(a->objects[0].object.color, "");
}

TEST(Answer, UnusableAnswersAreErrors) {
  for (const std::string& t : {std::string("The part looks fine to me."), std::string("{\"text\": \"cut off"),
                               std::string(R"({"text":"no list"})"), std::string(R"({"objects":[{"qc":"MAYBE"}]})"),
                               std::string(R"({"objects":[{"qc":"NOK","bounding_box":[1,2,3]}]})"),
                               std::string(R"({"objects":[{"qc":"NOK","bounding_box":{"x_min":"left"}}]})"),
                               std::string(R"({"objects": "none"})")}) {
    EXPECT_FALSE(Parse(t).ok()) << t;
  }
}

TEST(Answer, HostileInputIsBounded) {
  std::string deep(10000, '[');
  EXPECT_FALSE(ExtractJson("{\"a\":" + deep).ok());
  EXPECT_FALSE(ExtractJson(std::string(2 << 20, ' ') + "{}").ok());  // over 1 MB
}

TEST(Answer, BoxConventionsMapToOriginalPixels) {
  // Original 2000x1000, sent fitted to 1024x512.
  auto b = MapBox({100, 200, 300, 400}, true, BoxFormat::kNorm1000, 1024, 512, 2000, 1000);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->x_min, 200);
  EXPECT_EQ(b->y_min, 200);
  EXPECT_EQ(b->x_max, 600);
  EXPECT_EQ(b->y_max, 400);
  // Gemini order [ymin, xmin, ymax, xmax] for a bare array.
  b = MapBox({200, 100, 400, 300}, false, BoxFormat::kNorm1000Yx, 1024, 512, 2000, 1000);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->x_min, 200);
  EXPECT_EQ(b->y_max, 400);
  // Pixels of the image as sent.
  b = MapBox({512, 256, 1024, 512}, true, BoxFormat::kPixels, 1024, 512, 2000, 1000);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->x_min, 1000);
  EXPECT_EQ(b->y_min, 500);
  EXPECT_EQ(b->x_max, 2000);
  EXPECT_EQ(b->y_max, 1000);
  // Inverted corners are swapped, overshoot is clamped, a line is dropped.
  b = MapBox({900, 800, 100, 1200}, true, BoxFormat::kNorm1000, 1024, 512, 2000, 1000);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->x_min, 200);
  EXPECT_EQ(b->x_max, 1800);
  EXPECT_EQ(b->y_min, 800);
  EXPECT_EQ(b->y_max, 1000);
  EXPECT_FALSE(MapBox({100, 100, 100, 500}, true, BoxFormat::kNorm1000, 1024, 512, 2000, 1000));
  EXPECT_FALSE(MapBox({1100, 100, 1200, 500}, true, BoxFormat::kNorm1000, 1024, 512, 2000, 1000));
}

TEST(Profiles, BuiltinsAndFiles) {
  auto generic = LoadProfile("generic"), tooth = LoadProfile("toothbrush");
  ASSERT_TRUE(generic.ok() && tooth.ok());
  EXPECT_NE(tooth->System().find("NOT defects"), std::string::npos);
  EXPECT_NE(tooth->System().find("colour"), std::string::npos);
  EXPECT_EQ(generic->System().find("NOT defects"), std::string::npos);
  EXPECT_NE(generic->Instruction().find("\"bounding_box\""), std::string::npos);  // the schema is spelled out
  EXPECT_FALSE(LoadProfile("/nonexistent/profile.json").ok());
}

}  // namespace
}  // namespace zeroqc
