// zeroqc: zero-training visual defect detection. Subcommands live in src/cli/*.cc.
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"zeroqc: zero-training visual defect detection"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "zeroqc 0.1.0");
  zeroqc::cli::RegisterInspect(app);
  zeroqc::cli::RegisterConvert(app);
  zeroqc::cli::RegisterDemo(app);
  zeroqc::cli::RegisterBench(app);
  zeroqc::cli::RegisterServe(app);
  zeroqc::cli::RegisterRefs(app);
  zeroqc::cli::RegisterKeys(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return zeroqc::cli::kExitBadArguments;
  } catch (const zeroqc::cli::ExitStatus& e) {  // subcommands report their status this way
    return e.code;
  }
  return 0;
}
