// A real `zeroqc serve` process for the tests that need one: spawned on a free port (read from its
// first stdout line), with a generous queue and rate limit unless `extra` says otherwise.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli/run_zeroqc.h"

namespace zeroqc {

struct ServerProcess {
  pid_t pid = -1;
  int port = 0;
};

// `in_child`: run in the child before it becomes serve (e.g. to drop a capability).
inline ServerProcess Spawn(const std::filesystem::path& data, const std::vector<std::string>& extra = {},
                           const std::function<void()>& in_child = nullptr) {
  int out[2];
  EXPECT_EQ(pipe(out), 0);
  ServerProcess s;
  s.pid = fork();
  if (s.pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    const std::string bin = testing::ZeroqcBinary().string(), d = data.string(), cache = (testing::BinaryDir() / "test-cache").string();
    std::vector<std::string> args = {bin, "serve", "--data", d, "--port", "0", "--queue", "100", "--rate", "1000",
                                     "--burst", "1000", "--cache", cache};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (in_child) in_child();
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  FILE* f = fdopen(out[0], "r");
  char line[64] = {0};
  if (fgets(line, sizeof line, f)) std::sscanf(line, "port %d", &s.port);
  fclose(f);
  return s;
}

}  // namespace zeroqc
