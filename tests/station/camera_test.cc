// The station's camera end to end over GigE Vision: Aravis's own fake GigE camera, in this process
// on 127.0.0.1, speaks the real protocol (GVCP control, GVSP stream) and fills each frame with a
// real toothbrush photo in the pixel format the station asked for. What arrives must be that photo.
#include <atomic>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "station/camera.h"
#include "station/fakes.h"
#include "test_support.h"

namespace zeroqc {
namespace {

double MeanDifference(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat d;
  cv::absdiff(a, b, d);
  return cv::mean(d.reshape(1))[0];
}

TEST(Camera, FramesArriveAsThePhotoInEachFormatAndIncompleteOnesAreRefused) {
  REQUIRE_DATASETS();
  const cv::Mat photo = cv::imread((testing::Datasets() / "mvtec-toothbrush/test/defective/000.png").string());
  ASSERT_FALSE(photo.empty());
  testing::FakeGigECamera fake([&] { return photo; }, 256, 256);
  ASSERT_TRUE(fake.running());
  for (auto [name, format] : {std::pair{"RGB8", PixelFormat::kRgb8}, {"BayerRG8", PixelFormat::kBayerRg8}, {"Mono8", PixelFormat::kMono8}}) {
    CameraSettings s;
    s.id = "127.0.0.1";
    s.pixel_format = format;
    s.roi_x = 0, s.roi_y = 0, s.roi_width = 256, s.roi_height = 256;
    auto cam = Camera::Open(s, TriggerSource::kSoftware);
    ASSERT_TRUE(cam.ok()) << name << ": " << cam.status().message();
    auto frame = (*cam)->Grab(3000, true);
    ASSERT_TRUE(frame.ok()) << name << ": " << frame.status().message();
    ASSERT_EQ(frame->size(), cv::Size(256, 256)) << name;
    cv::Mat want;
    cv::resize(photo, want, {256, 256}, 0, 0, cv::INTER_AREA);
    if (format == PixelFormat::kMono8) {
      cv::cvtColor(want, want, cv::COLOR_BGR2GRAY);
      cv::cvtColor(want, want, cv::COLOR_GRAY2BGR);
    }
    EXPECT_LT(MeanDifference(*frame, want), format == PixelFormat::kBayerRg8 ? 12.0 : 2.0) << name;
    // Untriggered, the camera sends nothing: a timeout, said as such.
    auto idle = (*cam)->Grab(300, false);
    ASSERT_FALSE(idle.ok());
    EXPECT_EQ(idle.status().code(), Code::kUnavailable) << idle.status().message();
  }

  // Lost packets (one fake camera per test process: it holds the GigE Vision control port): a frame
  // that arrives incomplete is an error, never an image, and the frames that do arrive whole are
  // the photo.
  fake.LosePackets(0.01);  // about 47 packets a frame: some frames lose one, most arrive whole
  CameraSettings s;
  s.id = "127.0.0.1";
  s.pixel_format = PixelFormat::kMono8;
  s.roi_x = 0, s.roi_y = 0, s.roi_width = 256, s.roi_height = 256;
  auto cam = Camera::Open(s, TriggerSource::kSoftware);
  ASSERT_TRUE(cam.ok()) << cam.status().message();
  cv::Mat want;
  cv::resize(photo, want, {256, 256}, 0, 0, cv::INTER_AREA);
  cv::cvtColor(want, want, cv::COLOR_BGR2GRAY);
  cv::cvtColor(want, want, cv::COLOR_GRAY2BGR);
  int whole = 0, incomplete = 0, missing = 0;
  for (int i = 0; i < 20; ++i) {
    auto f = (*cam)->Grab(2000, true);
    if (f.ok()) {
      ++whole;
      EXPECT_LT(MeanDifference(*f, want), 2.0) << "frame " << i << " passed as whole";
    } else if (f.status().code() == Code::kCorrupt) {
      ++incomplete;
      EXPECT_NE(f.status().message().find("not inspected"), std::string::npos) << f.status().message();
    } else {
      ++missing;
    }
  }
  EXPECT_GT(incomplete + missing, 0) << "1% of packets lost: some frame must come incomplete (" << whole << " whole)";
  EXPECT_GT(whole, 0) << "and some whole";
  std::printf("lost packets: %d whole, %d incomplete, %d missing of 20\n", whole, incomplete, missing);
}

// Other traffic on the camera's network (here: random datagrams on loopback, as fast as they go)
// while the camera is opened again and again: every open's first frame arrives whole and is the
// photo. Aravis's raw packet socket (its choice as root) read such strays as frames: a stream that
// stayed silent, or the process aborted on a "frame" of 60 GB.
TEST(Camera, StrayPacketsNeverBecomeFramesAndEachOpensFirstFrameIsWhole) {
  REQUIRE_DATASETS();
  const cv::Mat photo = cv::imread((testing::Datasets() / "mvtec-toothbrush/test/good/000.png").string());
  ASSERT_FALSE(photo.empty());
  testing::FakeGigECamera fake([&] { return photo; }, 384, 384);
  std::atomic<bool> stop{false};
  std::thread strays([&] {
    const int s = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons(9);  // discard: nobody listens
    std::mt19937 rng(7);
    char packet[256];
    while (!stop) {
      for (char& c : packet) c = char(rng());
      sendto(s, packet, 16 + rng() % 240, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    close(s);
  });
  cv::Mat want;
  cv::resize(photo, want, {384, 384}, 0, 0, cv::INTER_AREA);
  for (int i = 0; i < 30; ++i) {
    CameraSettings s;
    s.id = "127.0.0.1";
    s.pixel_format = PixelFormat::kRgb8;  // 316 packets a frame, sent in one burst
    s.roi_x = 0, s.roi_y = 0, s.roi_width = 384, s.roi_height = 384;
    auto cam = Camera::Open(s, TriggerSource::kSoftware);
    ASSERT_TRUE(cam.ok()) << "open " << i << ": " << cam.status().message();
    EXPECT_EQ((*cam)->buffer_warning(), "");
    auto frame = (*cam)->Grab(2000, true);
    ASSERT_TRUE(frame.ok()) << "open " << i << ": " << frame.status().message();
    EXPECT_LT(MeanDifference(*frame, want), 2.0) << "open " << i;
  }
  stop = true;
  strays.join();
}

TEST(Camera, NoCameraOrARefusedFeatureIsNamed) {
  CameraSettings s;
  s.id = "127.0.0.2";  // nothing answers there
  auto none = Camera::Open(s, TriggerSource::kSoftware);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Code::kNotFound);
  EXPECT_NE(none.status().message().find("127.0.0.2"), std::string::npos) << none.status().message();
}

}  // namespace
}  // namespace zeroqc
