#include <fstream>
#include <iostream>
#include <map>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cli/commands.h"

namespace zeroqc::cli {
namespace {

// Demo layout: <product>_reference.jpg beside <product>_nok*.jpg, one folder.
struct Product {
  std::vector<std::filesystem::path> refs, qc;
};

std::map<std::string, Product> GroupProducts(const std::vector<std::filesystem::path>& files) {
  std::map<std::string, Product> out;
  for (const auto& f : files) {
    std::string stem = f.stem().string();
    auto cut = stem.rfind('_');
    if (cut == std::string::npos) continue;
    auto& p = out[stem.substr(0, cut)];
    (stem.substr(cut + 1) == "reference" ? p.refs : p.qc).push_back(f);
  }
  return out;
}

std::filesystem::path DefaultDemoDir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  for (auto d : {exe / ".." / "demo" / "aws-nova-samples", std::filesystem::path("demo/aws-nova-samples")})
    if (std::filesystem::is_directory(d)) return std::filesystem::weakly_canonical(d);
  return "demo/aws-nova-samples";
}

// The samples hold one good photo per product, its reference. The demo's good test parts are that
// photo as the next good parts at the same station would look: moved by 2% of the frame and relit
// by +6%, then moved the other way, turned by 1.5 degrees and dimmed by 6%. A false alarm on them is
// one a line would see from placement and light alone. Written as JPEG into `dir`.
StatusOr<std::vector<std::filesystem::path>> GoodParts(const std::filesystem::path& reference, const std::filesystem::path& dir) {
  const cv::Mat img = cv::imread(reference.string(), cv::IMREAD_COLOR);  // EXIF orientation applied
  if (img.empty()) return InvalidArgument("cannot read " + reference.string());
  std::filesystem::create_directories(dir);
  struct Change {
    double dx, dy, degrees, gain;
  };
  const Change changes[] = {{0.02, 0.02, 0, 1.06}, {-0.02, -0.01, 1.5, 0.94}};
  std::vector<std::filesystem::path> out;
  int n = 0;
  for (const auto& c : changes) {
    cv::Mat m = cv::getRotationMatrix2D(cv::Point2f(img.cols / 2.0f, img.rows / 2.0f), c.degrees, 1.0);
    m.at<double>(0, 2) += c.dx * img.cols;
    m.at<double>(1, 2) += c.dy * img.rows;
    cv::Mat moved;
    cv::warpAffine(img, moved, m, img.size(), cv::INTER_LINEAR, cv::BORDER_REPLICATE);
    moved.convertTo(moved, -1, c.gain, 0);
    const std::string stem = reference.stem().string();
    auto path = dir / (stem.substr(0, stem.rfind('_')) + "_good" + std::to_string(++n) + ".jpg");
    if (!cv::imwrite(path.string(), moved, {cv::IMWRITE_JPEG_QUALITY, 92})) return Internal("cannot write " + path.string());
    out.push_back(path);
  }
  return out;
}

}  // namespace

void RegisterDemo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "inspect the bundled demo products (one reference each) and write results and overlays");
  struct Args {
    EngineFlags engine;
    std::string data, out = "demo-out";
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--data", args->data, "folder of <product>_reference.jpg and <product>_nok*.jpg (default: the bundled demo/)");
  cmd->add_option("--out", args->out, "where results.jsonl and overlays go");
  args->engine.Register(cmd, EngineFlags::kPatchFlags);
  cmd->callback([args] {
    std::filesystem::path data = args->data.empty() ? DefaultDemoDir() : std::filesystem::path(args->data);
    auto files = ListImages(data);
    if (!files.ok()) {
      std::cerr << "zeroqc demo: " << files.status().message() << "\n";
      throw ExitStatus{kExitBadArguments};
    }
    std::filesystem::create_directories(args->out);
    auto jsonl_path = std::filesystem::path(args->out) / "results.jsonl";
    std::ofstream jsonl(jsonl_path);
    int rc = kExitOk;
    size_t defects = 0, caught = 0, good = 0, false_alarms = 0;
    const std::filesystem::path out(args->out);
    for (const auto& [name, product] : GroupProducts(*files)) {
      if (product.refs.empty() || product.qc.empty()) continue;
      auto opts = args->engine.Options(data);
      if (!opts.ok()) {
        std::cerr << "zeroqc demo: " << opts.status().message() << "\n";
        throw ExitStatus{kExitBadArguments};
      }
      auto engine = PatchEngine::Create(*opts, product.refs);
      if (!engine.ok()) {
        std::cerr << "zeroqc demo: " << name << ": " << engine.status().message() << "\n";
        throw ExitStatus{kExitBadArguments};
      }
      auto good_parts = GoodParts(product.refs.front(), out / "good-parts");
      if (!good_parts.ok()) {
        std::cerr << "zeroqc demo: " << name << ": " << good_parts.status().message() << "\n";
        throw ExitStatus{kExitBadArguments};
      }
      std::cerr << "== " << name << ": " << product.refs.size() << " reference(s), " << product.qc.size() << " defective and "
                << good_parts->size() << " good part(s), threshold " << (*engine)->threshold() << "\n";
      std::vector<std::string> nok_images, good_images;
      for (const auto& q : product.qc) nok_images.push_back(q.string());
      for (const auto& g : *good_parts) good_images.push_back(g.string());
      size_t nok = 0, alarms = 0;
      rc = std::max(rc, InspectImages(**engine, nok_images, opts->limits, (out / "overlays").string(), &jsonl, 1, &nok));
      rc = std::max(rc, InspectImages(**engine, good_images, opts->limits, (out / "overlays").string(), &jsonl, 1, &alarms));
      defects += nok_images.size(), caught += nok, good += good_images.size(), false_alarms += alarms;
    }
    std::cerr << "results: " << jsonl_path.string() << "\noverlays: " << (out / "overlays").string() << "\n";
    std::cerr << "caught " << caught << "/" << defects << " defects, " << false_alarms << "/" << good
              << " false alarms (good parts: each reference photo moved and relit, in " << (out / "good-parts").string()
              << "; one reference per product: README, what one reference can see)\n";
    if (rc != kExitOk) throw ExitStatus{rc};
  });
}

}  // namespace zeroqc::cli
