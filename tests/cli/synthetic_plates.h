// Synthetic parts for end-to-end tests: a machined plate with a 4x4 grid of holes, shifted and
// re-lit a little per image; defects are a scratch or a missing hole.
#pragma once

#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace zeroqc::testing {

namespace fs = std::filesystem;

enum class Defect { kNone, kScratch, kMissingHole };

// A plate with a 4x4 grid of holes, shifted and re-lit a little per image; `mask` gets the defect.
inline cv::Mat Plate(std::mt19937& rng, Defect defect, cv::Mat* mask) {
  std::uniform_int_distribution<int> shift(-3, 3), light(-8, 8);
  cv::Mat img(224, 224, CV_8UC3, cv::Scalar(40, 40, 40));
  const cv::Point off(shift(rng), shift(rng));
  const int base = 170 + light(rng);
  cv::rectangle(img, cv::Point(24, 24) + off, cv::Point(200, 200) + off, cv::Scalar::all(base), cv::FILLED);
  *mask = cv::Mat::zeros(img.size(), CV_8U);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) {
      cv::Point centre = cv::Point(52 + 40 * c, 52 + 40 * r) + off;
      if (defect == Defect::kMissingHole && r == 1 && c == 2) {
        cv::circle(*mask, centre, 10, 255, cv::FILLED);
        continue;
      }
      cv::circle(img, centre, 9, cv::Scalar(60, 60, 70), cv::FILLED);
    }
  if (defect == Defect::kScratch) {
    cv::line(img, cv::Point(60, 150) + off, cv::Point(150, 120) + off, cv::Scalar(30, 30, 30), 3);
    cv::line(*mask, cv::Point(60, 150) + off, cv::Point(150, 120) + off, 255, 5);
  }
  cv::Mat noise(img.size(), CV_8UC3);
  cv::randn(noise, 0, 3);
  return img + noise;
}

struct Counts {
  int train = 4, good = 3, scratch = 2, missing = 2;
};

inline fs::path MakeDataset(const fs::path& root, Counts n = {}, unsigned seed = 5) {
  std::mt19937 rng(seed);
  cv::Mat mask;
  auto write = [&](const std::string& dir, int n, Defect d) {
    fs::create_directories(root / dir);
    for (int i = 0; i < n; ++i) {
      char name[16];
      std::snprintf(name, sizeof name, "%03d", i);
      cv::imwrite((root / dir / (std::string(name) + ".png")).string(), Plate(rng, d, &mask));
      if (d == Defect::kNone) continue;
      auto gt = root / "ground_truth" / fs::path(dir).filename();
      fs::create_directories(gt);
      cv::imwrite((gt / (std::string(name) + "_mask.png")).string(), mask);
    }
  };
  write("train/good", n.train, Defect::kNone);
  write("test/good", n.good, Defect::kNone);
  write("test/scratch", n.scratch, Defect::kScratch);
  write("test/missing_hole", n.missing, Defect::kMissingHole);
  return root;
}

}  // namespace zeroqc::testing
