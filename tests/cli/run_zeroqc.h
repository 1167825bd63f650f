// Runs the built zeroqc binary as a user would and captures its exit status, stdout and stderr.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace zeroqc::testing {

struct Run {
  int status;
  std::string out, err;
};

inline Run Zeroqc(const std::string& args) {
  auto err_path = std::filesystem::temp_directory_path() / ("zeroqc-cli-stderr-" + std::to_string(getpid()) + ".txt");
  std::string cmd = ZeroqcBinary().string() + " " + args + " 2>" + err_path.string();
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  int st = pclose(p);
  std::ifstream in(err_path);
  std::string err((std::istreambuf_iterator<char>(in)), {});
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out, err};
}

inline std::vector<nlohmann::json> Lines(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream s(out);
  for (std::string line; std::getline(s, line);) v.push_back(nlohmann::json::parse(line));
  return v;
}

// Memory banks shared by the CLI tests, inside the build tree.
inline const std::string kCache = " --cache " + (BinaryDir() / "test-cache").string();

}  // namespace zeroqc::testing
