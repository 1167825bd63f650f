// zeroqc refs suggest: set up a new product from a day's unlabelled photos by copying the most
// typical parts of the batch (lowest zero-shot mutual scores) into a reference folder.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <numeric>

#include "cli/commands.h"
#include "engines/patch/patch_engine.h"

namespace zeroqc::cli {

void RegisterRefs(CLI::App& app) {
  auto* refs = app.add_subcommand("refs", "manage reference images");
  refs->require_subcommand(1);
  auto* cmd = refs->add_subcommand(
      "suggest", "pick the most typical parts of an unlabelled batch as references (zero-shot mutual scoring)");
  struct Args {
    EngineFlags engine;
    std::string from, out;
    size_t count = 8;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--from", args->from, "folder of unlabelled photos of one product, most of them good parts")->required();
  cmd->add_option("--count", args->count, "references to pick (default 8)")->check(CLI::Range(1, 100000));
  cmd->add_option("--out", args->out, "reference folder to create or fill; it must not hold images yet")->required();
  args->engine.Register(cmd);
  cmd->callback([args] {
    auto fail = [](const std::string& m) {
      std::cerr << "zeroqc refs suggest: " << m << "\n";
      throw ExitStatus{kExitBadArguments};
    };
    auto images = ListImages(args->from);
    if (!images.ok()) fail(images.status().message());
    if (auto existing = ListImages(args->out); existing.ok() && !existing->empty())
      fail(args->out + " already holds images: choose an empty or new folder");
    auto opts = args->engine.Options({}, /*zero_shot=*/true);
    if (!opts.ok()) fail(opts.status().message());
    opts->zero_shot = true;
    auto engine = PatchEngine::Create(*opts, *images);
    if (!engine.ok()) fail(engine.status().message());
    const auto& batch = (*engine)->batch();
    const auto& scores = (*engine)->batch_scores();
    if (args->count > batch.size() / 2)
      fail("asked for " + std::to_string(args->count) + " references from " + std::to_string(batch.size()) +
           " readable images: pick at most half of the batch, so that unusual parts can stay out");
    std::vector<size_t> order(batch.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
    std::error_code ec;
    std::filesystem::create_directories(args->out, ec);
    if (ec) fail("cannot create " + args->out + ": " + ec.message());
    for (size_t k = 0; k < args->count; ++k) {
      const auto& src = batch[order[k]];
      std::filesystem::copy_file(src, std::filesystem::path(args->out) / src.filename(), ec);
      if (ec) fail("cannot copy " + src.string() + ": " + ec.message());
      std::printf("%s\t%.4f\n", src.c_str(), scores[order[k]]);
    }
    std::fprintf(stderr, "copied the %zu most typical of %zu images to %s (batch threshold %.4f; the most unusual: %s, %.4f)\n",
                 args->count, batch.size(), args->out.c_str(), (*engine)->threshold(), batch[order.back()].c_str(),
                 scores[order.back()]);
  });
}

}  // namespace zeroqc::cli
