// Makes the fake camera of the browser test from real photos: a Y4M clip (640x480, 10 fps) in which
// the table is empty, a part slides in and settles, the light changes while it lies still, then it
// stays. Also writes the reference frame (the good part, framed the same way) as a PNG.
// Usage: make_y4m OUT.y4m REF_OUT.png PART_IMAGE REFERENCE_IMAGE
#include <cstdio>
#include <fstream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace {

constexpr int kW = 640, kH = 480;

cv::Mat Table() { return cv::Mat(kH, kW, CV_8UC3, cv::Scalar(35, 38, 40)); }

// The photo scaled to cover the whole frame (centre crop, as a camera framing the part would see
// it), its left edge at x: at x = 0 it fills the frame.
cv::Mat Frame(const cv::Mat& photo, int x) {
  cv::Mat f = Table(), scaled;
  const double s = std::max(double(kW) / photo.cols, double(kH) / photo.rows);
  cv::resize(photo, scaled, {}, s, s, cv::INTER_AREA);
  cv::Mat cover = scaled(cv::Rect((scaled.cols - kW) / 2, (scaled.rows - kH) / 2, kW, kH));
  cv::Rect dst(x, 0, kW, kH), clip = dst & cv::Rect(0, 0, kW, kH);
  if (clip.area() > 0) cover(cv::Rect(clip.x - x, 0, clip.width, clip.height)).copyTo(f(clip));
  return f;
}

void Write(std::ofstream& out, const cv::Mat& bgr) {
  cv::Mat yuv;
  cv::cvtColor(bgr, yuv, cv::COLOR_BGR2YUV_I420);  // planar Y, U, V: what C420jpeg expects
  out << "FRAME\n";
  out.write(reinterpret_cast<const char*>(yuv.data), std::streamsize(yuv.total() * yuv.elemSize()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: make_y4m OUT.y4m REF_OUT.png PART_IMAGE REFERENCE_IMAGE\n");
    return 2;
  }
  cv::Mat part = cv::imread(argv[3]), ref = cv::imread(argv[4]);
  if (part.empty() || ref.empty()) {
    std::fprintf(stderr, "make_y4m: cannot read the photos\n");
    return 1;
  }
  cv::imwrite(argv[2], Frame(ref, 0));
  std::ofstream out(argv[1], std::ios::binary);
  out << "YUV4MPEG2 W" << kW << " H" << kH << " F10:1 Ip A1:1 C420jpeg\n";
  const int rest_x = 0;
  for (int i = 0; i < 10; ++i) Write(out, Table());                                // 0.0-1.0 s: empty
  for (int i = 1; i <= 10; ++i) Write(out, Frame(part, kW - (kW - rest_x) * i / 10));  // 1.0-2.0 s: slides in
  const cv::Mat still = Frame(part, rest_x);
  for (int i = 0; i < 20; ++i) Write(out, still);                                   // 2.0-4.0 s: settles
  for (int i = 0; i < 30; ++i) {                                                    // 4.0-7.0 s: the light changes
    const double a = 1.0 + 0.25 * std::sin(i * 3.14159 / 15);
    cv::Mat lit;
    still.convertTo(lit, -1, a, 8 * std::sin(i * 3.14159 / 15));
    Write(out, lit);
  }
  for (int i = 0; i < 30; ++i) Write(out, still);                                   // 7.0-10.0 s: still
  return out ? 0 : 1;
}
