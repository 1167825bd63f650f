// A bounded pool for independent items: at most `jobs` threads, each taking the next index.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

namespace zeroqc {

// Calls fn(i) for every i in [0, n), from min(jobs, n) threads (at least one); returns when all
// are done. `fn` must be safe to call concurrently for different i.
template <class Fn>
void ParallelFor(size_t n, int jobs, Fn&& fn) {
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next++) < n;) fn(i);
  };
  const size_t threads = std::max<size_t>(1, std::min<size_t>(size_t(std::max(jobs, 1)), n));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();  // the calling thread works too
  for (auto& t : pool) t.join();
}

}  // namespace zeroqc
