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
#include "engines/patch/reference_choice.h"
#include "image/decode.h"

namespace zeroqc::cli {

void RegisterRefs(CLI::App& app) {
  auto* refs = app.add_subcommand("refs", "manage reference images");
  refs->require_subcommand(1);
  RegisterRefsCheck(refs);
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
    auto looks = DescribeBatch(*images, args->engine, "the batch");
    if (!looks.ok()) fail(looks.status().message());
    if (args->count > looks->size() / 2)
      fail("asked for " + std::to_string(args->count) + " references from " + std::to_string(looks->size()) +
           " readable images: pick at most half of the batch, so that unusual parts can stay out");
    const ReferenceChoice c = ChooseReferences(*looks, args->count, size_t(std::max(1, args->engine.zero_shot_peers)));
    const auto& chosen = c.chosen;
    const auto& candidates = c.candidates;
    const auto& scores = c.scores;
    std::error_code ec;
    std::filesystem::create_directories(args->out, ec);
    if (ec) fail("cannot create " + args->out + ": " + ec.message());
    for (size_t k : chosen) {
      const auto& src = (*looks)[k].path;
      std::filesystem::copy_file(src, std::filesystem::path(args->out) / src.filename(), ec);
      if (ec) fail("cannot copy " + src.string() + ": " + ec.message());
      std::printf("%s\t%.4f\n", src.c_str(), scores[k]);
    }
    // How well they cover: each candidate's distance to its nearest reference, the worst one named.
    double worst = 0;
    size_t worst_at = chosen[0];
    for (size_t i : candidates) {
      double d = std::numeric_limits<double>::infinity();
      for (size_t k : chosen) d = std::min(d, LookDistance((*looks)[i].descriptor, (*looks)[k].descriptor));
      if (d > worst) worst = d, worst_at = i;
    }
    std::string unusual;
    std::vector<size_t> order(looks->size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
    for (size_t i : order)
      if (std::find(candidates.begin(), candidates.end(), i) == candidates.end())
        unusual += (unusual.empty() ? "" : ", ") + (*looks)[i].path.filename().string() + " (" + std::to_string(scores[i]).substr(0, 5) + ")";
    std::fprintf(stderr, "copied %zu of %zu images to %s, chosen to cover the %zu parts the batch judges normal\n", chosen.size(),
                 looks->size(), args->out.c_str(), candidates.size());
    if (!unusual.empty())
      std::fprintf(stderr, "left out as unusual (over the batch's threshold %.3f; look at them: defects, or a variant to add): %s\n",
                   c.threshold, unusual.c_str());
    std::fprintf(stderr, "the part least like any chosen reference: %s\n", (*looks)[worst_at].path.filename().c_str());
  });
}

}  // namespace zeroqc::cli
