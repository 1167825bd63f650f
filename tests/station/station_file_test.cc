// Station files: a full one read as written, and each kind of mistake named with where it is.
#include <fstream>

#include <gtest/gtest.h>

#include "station/station_file.h"
#include "test_support.h"

namespace zeroqc {
namespace {

TEST(StationFile, AFullFileIsReadAsWritten) {
  const auto s = ParseStation(nlohmann::json::parse(R"({
    "name": "line-3",
    "product": "brush",
    "camera": {"id": "Aravis-GV01", "exposure_us": 8000, "gain": 2.5, "pixel_format": "BayerRG8",
               "roi": {"x": 16, "y": 8, "width": 640, "height": 480}, "packet_size": 8000, "timeout_ms": 250},
    "trigger": "plc",
    "plc": {"host": "10.0.0.5", "port": 1502, "unit": 3, "trigger_coil": 7, "part_id_register": 20, "result_register": 40,
            "poll_ms": 10},
    "queue": 2})"));
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->name, "line-3");
  EXPECT_EQ(*s->camera.packet_size, 8000);
  EXPECT_EQ(s->camera.timeout_ms, 250);
  EXPECT_EQ(s->plc->poll_ms, 10);
  EXPECT_EQ(s->product, "brush");
  EXPECT_EQ(s->camera.id, "Aravis-GV01");
  EXPECT_EQ(*s->camera.exposure_us, 8000);
  EXPECT_EQ(s->camera.pixel_format, PixelFormat::kBayerRg8);
  EXPECT_EQ(*s->camera.roi_width, 640);
  EXPECT_EQ(s->trigger, TriggerSource::kPlc);
  ASSERT_TRUE(s->plc);
  EXPECT_EQ(s->plc->port, 1502);
  EXPECT_EQ(s->plc->unit, 3);
  EXPECT_EQ(s->plc->trigger_coil, 7);
  EXPECT_EQ(s->plc->result_register, 40);
  EXPECT_EQ(s->queue, 2);
  // The least a station needs: a product; the first camera, software trigger, Mono8.
  const auto min = ParseStation(nlohmann::json::parse(R"({"product": "brush"})"));
  ASSERT_TRUE(min.ok());
  EXPECT_TRUE(min->camera.id.empty());
  EXPECT_EQ(min->trigger, TriggerSource::kSoftware);
  EXPECT_EQ(min->name, "station");
  EXPECT_FALSE(min->camera.packet_size) << "the largest the path carries";
  EXPECT_FALSE(min->plc);
}

TEST(StationFile, EachMistakeIsNamedWithWhereItIs) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({})", "needs \"product\""},
      {R"({"product": "b", "camra": {}})", "unknown key 'camra'"},
      {R"({"product": "b", "camera": {"pixel_format": "YUV422"}})", "camera.pixel format 'YUV422'"},
      {R"({"product": "b", "camera": {"exposure_us": -5}})", "camera.exposure_us must be between"},
      {R"({"product": "b", "camera": {"roi": {"x": 0, "y": 0, "width": 10}}})", "height is missing"},
      {R"({"product": "b", "trigger": "button"})", "trigger must be"},
      {R"({"product": "b", "trigger": "plc"})", "needs a \"plc\" section"},
      {R"({"product": "b", "plc": {"port": 502}})", "plc.host"},
      {R"({"product": "b", "plc": {"host": "x", "port": 70000}})", "plc.port must be 1-65535"},
      {R"({"product": "b", "plc": {"host": "x", "part_id_register": 101}})", "lies in the result registers 100-103"},
      {R"({"product": "b", "queue": 1.5})", "queue must be a whole number"},
      {R"({"product": "b", "name": ""})", "name must be 1-64 letters"},
      {R"({"product": "b", "name": "a\"} 1\nx"})", "name must be 1-64 letters"},
      {R"({"product": "b", "camera": {"packet_size": 100}})", "camera.packet_size must be 576-16000"},
      {R"({"product": "b", "plc": {"host": "x", "poll_ms": 0}})", "plc.poll_ms must be 1-1000"},
  };
  for (const auto& [text, want] : cases) {
    const auto s = ParseStation(nlohmann::json::parse(text));
    ASSERT_FALSE(s.ok()) << text;
    EXPECT_EQ(s.status().code(), Code::kInvalidArgument);
    EXPECT_NE(s.status().message().find(want), std::string::npos) << text << " -> " << s.status().message();
  }
}

TEST(StationFile, AFileThatIsMissingOrNotJsonIsRefused) {
  const auto dir = testing::TempDir();
  EXPECT_EQ(LoadStation(dir / "none.json").status().code(), Code::kNotFound);
  std::ofstream(dir / "bad.json") << "{\"product\": ";
  auto bad = LoadStation(dir / "bad.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not valid JSON"), std::string::npos);
  std::ofstream(dir / "ok.json") << R"({"product": "brush", "trigger": "line0"})";
  auto ok = LoadStation(dir / "ok.json");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->trigger, TriggerSource::kLine0);
}

}  // namespace
}  // namespace zeroqc
