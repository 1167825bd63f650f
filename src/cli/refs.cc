// zeroqc refs suggest: set up a new product from a day's unlabelled photos. Each part is compared
// with the parts that look most like it, so that a rare variant (8 yellow brushes among 48) finds its
// own kind and stays normal while a local defect still stands out; the unusual parts stay out, and
// from the rest the references are chosen to cover the batch's variation (greedy k-centre over
// image descriptors), not to be the most typical: the four most typical brushes were all blue, and
// every yellow good brush was then a false reject.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <numeric>

#include "cli/commands.h"
#include "engines/patch/knn.h"
#include "engines/patch/memory_bank.h"
#include "engines/patch/threshold.h"
#include "features/backbone.h"
#include "image/decode.h"

namespace zeroqc::cli {
namespace {

// An image's look as one vector: each layer's patch descriptors averaged over the image, each
// layer's part L2-normalised (as the patches' are), so that layers weigh alike.
std::vector<float> ImageDescriptor(const MemoryBank& b) {
  cv::Mat mean;
  cv::reduce(b.rows, mean, 0, cv::REDUCE_AVG);
  std::vector<float> out(mean.begin<float>(), mean.end<float>());
  for (int k = 0, c = 0; k < int(b.Blocks().size()); c += b.Blocks()[k++]) {
    double n = 0;
    for (int j = c; j < c + b.Blocks()[k]; ++j) n += double(out[j]) * out[j];
    n = std::sqrt(std::max(n, 1e-12));
    for (int j = c; j < c + b.Blocks()[k]; ++j) out[j] = float(out[j] / n);
  }
  return out;
}

double Distance(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return std::sqrt(d);
}

// Each part's score: its patches' distances to the `peers` parts that look most like it (nearest by
// image descriptor), a patch counting by its nearest match among them; the image's score is its
// worst patch. A variant finds its own kind among its peers; a defect matches none of them.
std::vector<double> LookAlikeScores(const std::vector<MemoryBank>& banks, const std::vector<std::vector<float>>& descriptors,
                                    size_t peers) {
  std::vector<double> scores(banks.size());
  for (size_t i = 0; i < banks.size(); ++i) {
    std::vector<std::pair<double, size_t>> near;
    for (size_t j = 0; j < banks.size(); ++j)
      if (j != i) near.emplace_back(Distance(descriptors[i], descriptors[j]), j);
    std::sort(near.begin(), near.end());
    std::vector<float> best(size_t(banks[i].rows.rows), std::numeric_limits<float>::max());
    for (size_t k = 0; k < std::min(peers, near.size()); ++k) {
      const auto d = NearestDistances(banks[i].rows, banks[near[k].second]);
      for (size_t p = 0; p < d.size(); ++p) best[p] = std::min(best[p], d[p]);
    }
    scores[i] = *std::max_element(best.begin(), best.end());
  }
  return scores;
}

// Greedy k-centre: starts from the most typical candidate (lowest score), then adds the candidate
// farthest from everything chosen so far, until `count`. Returns indices into `descriptors`.
std::vector<size_t> CoverBatch(const std::vector<std::vector<float>>& descriptors, const std::vector<size_t>& candidates,
                               const std::vector<double>& scores, size_t count) {
  std::vector<size_t> chosen;
  if (candidates.empty() || count == 0) return chosen;
  size_t first = candidates[0];
  for (size_t c : candidates)
    if (scores[c] < scores[first]) first = c;
  chosen.push_back(first);
  std::vector<double> nearest(descriptors.size(), std::numeric_limits<double>::infinity());
  while (chosen.size() < std::min(count, candidates.size())) {
    size_t best = candidates[0];
    double far = -1;
    for (size_t c : candidates) {
      nearest[c] = std::min(nearest[c], Distance(descriptors[c], descriptors[chosen.back()]));
      if (nearest[c] > far) far = nearest[c], best = c;
    }
    chosen.push_back(best);
  }
  return chosen;
}

}  // namespace

void RegisterRefs(CLI::App& app) {
  auto* refs = app.add_subcommand("refs", "manage reference images");
  refs->require_subcommand(1);
  auto* cmd = refs->add_subcommand(
      "suggest", "pick references from an unlabelled batch: unusual parts left out, the rest covered (README: setting up from unlabelled photos)");
  struct Args {
    EngineFlags engine;
    std::string from, out;
    size_t count = 8;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--from", args->from, "folder of unlabelled photos of one product, most of them good parts")->required();
  cmd->add_option("--count", args->count, "references to pick (default 8)")->check(CLI::Range(1, 100000));
  cmd->add_option("--out", args->out, "reference folder to create or fill; it must not hold images yet")->required();
  cmd->add_option("--peers", args->engine.zero_shot_peers, "the parts most like each part that it is compared with (default 4)")
      ->check(CLI::Range(1, 1000));
  args->engine.zero_shot_peers = 4;
  cmd->add_flag("--quiet", args->engine.quiet, "no progress line on stderr");
  cmd->add_option("--backbone", args->engine.backbone, std::string("feature backbone (default ") + kDefaultBackbone + ")");
  cmd->add_option("--max-pixels", args->engine.max_pixels, "refuse images with more pixels than this (default 100000000)")
      ->check(CLI::PositiveNumber);
  cmd->callback([args] {
    auto fail = [](const std::string& m) {
      std::cerr << "zeroqc refs suggest: " << m << "\n";
      throw ExitStatus{kExitBadArguments};
    };
    auto images = ListImages(args->from);
    if (!images.ok()) fail(images.status().message());
    if (auto existing = ListImages(args->out); existing.ok() && !existing->empty())
      fail(args->out + " already holds images: choose an empty or new folder");
    if (images->size() < 2 * args->count)
      fail("asked for " + std::to_string(args->count) + " references from " + std::to_string(images->size()) +
           " images: pick at most half of the batch, so that unusual parts can stay out");
    // The references' own backbone: the product will describe them with it.
    auto spec_path = ResolveBackbone(args->engine.ChosenBackbone());
    if (!spec_path.ok()) fail(spec_path.status().message());
    auto spec = BackboneSpec::Load(*spec_path);
    if (!spec.ok()) fail(spec.status().message());
    auto backbone = Backbone::Open(*spec);
    if (!backbone.ok()) fail(backbone.status().message());
    ImageLimits limits = args->engine.limits();
    limits.decode_side = 1024;  // the engine's own reduced decoding: the backbone sees 416 px
    std::vector<std::filesystem::path> batch;
    std::vector<MemoryBank> banks;
    for (const auto& path : *images) {
      auto img = LoadImage(path, limits);
      if (!img.ok()) {  // one unreadable photo does not spoil a day's batch
        std::fprintf(stderr, "skipped %s: %s\n", path.c_str(), img.status().message().c_str());
        continue;
      }
      auto maps = (*backbone)->Extract(img->bgr);
      if (!maps.ok()) fail(path.string() + ": " + maps.status().message());
      MemoryBank b;
      b.Add(MakePatchGrid(*maps, PatchOptions{}));
      b.UpdateNorms();
      batch.push_back(path);
      banks.push_back(std::move(b));
      if (!args->engine.quiet) std::fprintf(stderr, "\rdescribing the batch: %zu/%zu", banks.size(), images->size());
    }
    if (!args->engine.quiet) std::fprintf(stderr, "\n");
    if (args->count > batch.size() / 2)
      fail("asked for " + std::to_string(args->count) + " references from " + std::to_string(batch.size()) +
           " readable images: pick at most half of the batch, so that unusual parts can stay out");
    std::vector<std::vector<float>> descriptors;
    for (const auto& b : banks) descriptors.push_back(ImageDescriptor(b));
    const std::vector<double> scores = LookAlikeScores(banks, descriptors, size_t(std::max(1, args->engine.zero_shot_peers)));
    const double threshold = CalibrateBatch(scores, 2.0);
    // Candidates: the parts that the batch judges normal; if too few, the most typical ones.
    std::vector<size_t> order(batch.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
    std::vector<size_t> candidates;
    for (size_t i : order)
      if (scores[i] <= threshold || candidates.size() < args->count) candidates.push_back(i);
    const auto chosen = CoverBatch(descriptors, candidates, scores, args->count);

    std::error_code ec;
    std::filesystem::create_directories(args->out, ec);
    if (ec) fail("cannot create " + args->out + ": " + ec.message());
    for (size_t k : chosen) {
      const auto& src = batch[k];
      std::filesystem::copy_file(src, std::filesystem::path(args->out) / src.filename(), ec);
      if (ec) fail("cannot copy " + src.string() + ": " + ec.message());
      std::printf("%s\t%.4f\n", src.c_str(), scores[k]);
    }
    // How well they cover: each candidate's distance to its nearest reference, the worst one named.
    double worst = 0;
    size_t worst_at = chosen[0];
    for (size_t c : candidates) {
      double d = std::numeric_limits<double>::infinity();
      for (size_t k : chosen) d = std::min(d, Distance(descriptors[c], descriptors[k]));
      if (d > worst) worst = d, worst_at = c;
    }
    std::string unusual;
    for (auto it = order.rbegin(); it != order.rend(); ++it)
      if (std::find(candidates.begin(), candidates.end(), *it) == candidates.end())
        unusual += (unusual.empty() ? "" : ", ") + batch[*it].filename().string() + " (" + std::to_string(scores[*it]).substr(0, 5) + ")";
    std::fprintf(stderr, "copied %zu of %zu images to %s, chosen to cover the %zu parts the batch judges normal\n", chosen.size(),
                 batch.size(), args->out.c_str(), candidates.size());
    if (!unusual.empty())
      std::fprintf(stderr, "left out as unusual (over the batch's threshold %.3f; look at them: defects, or a variant to add): %s\n",
                   threshold, unusual.c_str());
    std::fprintf(stderr, "the part least like any chosen reference: %s\n", batch[worst_at].filename().c_str());
  });
}

}  // namespace zeroqc::cli
