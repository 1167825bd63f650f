// An OpenAI-compatible model server for measuring the cascade without a real model: it answers
// from a dataset's ground truth, right with a set probability (a "93% accurate model"), after a set
// latency, failing a set share of requests with HTTP 500. It recognises the image to inspect by its
// pixels: every test image is prepared exactly as the vlm engine sends it (decoded at the profile's
// side, fitted, encoded), so a request's image is found by a hash of its decoded pixels.
//   truth_model_server --dataset DIR [--accuracy 0.93] [--latency-ms 0] [--error-rate 0] [--seed 1]
//                      [--port 0] [--image-max-side 1024] [--image-format png]
// Prints "port N" when it listens; stops on SIGTERM or SIGINT.
#include <pthread.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <map>
#include <random>
#include <thread>

#include <CLI/CLI.hpp>
#include <httplib.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "bench/dataset.h"
#include "core/base64.h"
#include "core/hash.h"
#include "engines/vlm/vlm_engine.h"

namespace {

std::string PixelKey(const cv::Mat& bgr) {
  cv::Mat c = bgr.isContinuous() ? bgr : bgr.clone();
  return zeroqc::Sha256Hex(std::string_view(reinterpret_cast<const char*>(c.data), c.total() * c.elemSize()));
}

// A uniform number in [0, 1) fixed by the seed and the image: the same image gets the same answer.
double Draw(uint64_t seed, const std::string& key) {
  std::seed_seq s(key.begin(), key.end());
  std::mt19937_64 g(s);
  g.discard(seed % 1000);
  return std::uniform_real_distribution<>(0, 1)(g);
}

struct Truth {
  bool nok = false;
  cv::Rect box;  // the defect in pixels of the image as sent, empty when unknown
  std::string type;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"answers like a vision-language model, from a dataset's ground truth"};
  std::string dataset, format = "png";
  double accuracy = 0.93, error_rate = 0;
  int latency_ms = 0, port = 0, max_side = 1024;
  uint64_t seed = 1;
  app.add_option("--dataset", dataset, "MVTec-layout dataset")->required();
  app.add_option("--accuracy", accuracy, "probability of the right verdict")->check(CLI::Range(0.0, 1.0));
  app.add_option("--latency-ms", latency_ms, "delay before each answer");
  app.add_option("--error-rate", error_rate, "share of requests answered with HTTP 500")->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", seed, "which images get the wrong answer");
  app.add_option("--port", port, "0: any free port");
  app.add_option("--image-max-side", max_side, "as in the prompt profile");
  app.add_option("--image-format", format, "as in the prompt profile");
  CLI11_PARSE(app, argc, argv);

  auto d = zeroqc::LoadDataset(dataset);
  if (!d.ok()) {
    std::fprintf(stderr, "%s\n", d.status().message().c_str());
    return 2;
  }
  std::map<std::string, Truth> truth;
  zeroqc::ImageLimits limits;
  limits.decode_side = max_side;
  for (const auto& s : d->samples) {
    auto img = zeroqc::LoadImage(s.image, limits);
    if (!img.ok()) continue;
    auto enc = zeroqc::EncodeForModel(img->bgr, max_side, format);
    if (!enc.ok()) continue;
    cv::Mat sent = cv::imdecode(std::vector<uint8_t>(enc->bytes.begin(), enc->bytes.end()), cv::IMREAD_COLOR);
    Truth t{s.nok, {}, s.type};
    if (!s.mask.empty()) {
      cv::Mat m = cv::imread(s.mask.string(), cv::IMREAD_GRAYSCALE);
      if (!m.empty()) {
        cv::resize(m, m, sent.size(), 0, 0, cv::INTER_NEAREST);
        t.box = cv::boundingRect(m > 0);
      }
    }
    truth[PixelKey(sent)] = t;
  }
  std::fprintf(stderr, "truth_model_server: %zu images of %s\n", truth.size(), dataset.c_str());

  // Signals are taken by this thread alone (sigwait), so that the server stops cleanly.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  httplib::Server http;
  std::atomic<uint64_t> requests{0};
  http.Post("/chat/completions", [&](const httplib::Request& req, httplib::Response& res) {
    const uint64_t n = requests++;
    if (latency_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(latency_ms));
    std::mt19937_64 fail(seed * 7919 + n);
    if (std::uniform_real_distribution<>(0, 1)(fail) < error_rate) {
      res.status = 500;
      res.set_content(R"({"error":{"message":"injected failure"}})", "application/json");
      return;
    }
    auto body = nlohmann::json::parse(req.body, nullptr, false);
    std::string image;  // the image after the text "Image to inspect:"
    int images = 0;
    try {
      const auto& content = body.at("messages").at(1).at("content");
      bool next = false;
      for (const auto& part : content) {
        if (part.value("type", "") == "text") next = part.value("text", "") == "Image to inspect:";
        if (part.value("type", "") == "image_url") {
          ++images;
          if (next && image.empty()) image = part.at("image_url").at("url").get<std::string>();
        }
      }
    } catch (const nlohmann::json::exception&) {
    }
    const auto comma = image.find(',');
    auto bytes = zeroqc::Base64Decode(comma == std::string::npos ? "" : image.substr(comma + 1));
    cv::Mat sent;
    if (bytes.ok()) sent = cv::imdecode(*bytes, cv::IMREAD_COLOR);
    const auto key = sent.empty() ? std::string() : PixelKey(sent);
    auto it = truth.find(key);
    if (it == truth.end()) {
      res.status = 400;
      res.set_content(R"({"error":{"message":"not an image of the dataset"}})", "application/json");
      return;
    }
    const bool right = Draw(seed, key) < accuracy;
    const bool nok = it->second.nok == right;
    nlohmann::json objects = nlohmann::json::array();
    if (nok) {
      nlohmann::json box = nullptr;
      if (right && it->second.box.area() > 0) {
        const auto& b = it->second.box;
        box = {b.x, b.y, b.x + b.width, b.y + b.height};
      }
      objects.push_back({{"name", right ? it->second.type : "defect"}, {"color", ""}, {"qc", "NOK"},
                         {"reason", "ground truth" + std::string(right ? "" : " (deliberately wrong)")}, {"bounding_box", box}});
    }
    const std::string answer = nlohmann::json({{"text", nok ? "defective part" : "good part"}, {"objects", objects}}).dump();
    nlohmann::json reply = {{"choices", {{{"message", {{"role", "assistant"}, {"content", answer}}}, {"finish_reason", "stop"}}}},
                            {"usage", {{"prompt_tokens", 1200 * images + 400}, {"completion_tokens", int(answer.size() / 4)}}}};
    res.set_content(reply.dump(), "application/json");
  });
  port = port == 0 ? http.bind_to_any_port("127.0.0.1") : (http.bind_to_port("127.0.0.1", port) ? port : -1);
  if (port <= 0) return 1;
  std::thread listener([&] { http.listen_after_bind(); });
  std::printf("port %d\n", port);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&sigs, &sig);
  http.stop();
  listener.join();
  std::fprintf(stderr, "truth_model_server: %llu requests\n", static_cast<unsigned long long>(requests.load()));
  return 0;
}
