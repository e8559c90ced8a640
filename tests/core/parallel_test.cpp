// The kernel pool: every index is visited exactly once, chunking is fixed for a thread count,
// nested calls run inline, set_num_threads takes effect, and many back-to-back hand-offs (the
// spin path) and hand-offs after the workers went to sleep (the condition-variable path) neither
// lose a job nor deadlock.
#include "core/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

using namespace flaxpp;

namespace {
struct ThreadCount {
  int saved = num_threads();
  explicit ThreadCount(int n) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(saved); }
};
}  // namespace

TEST_CASE("parallel_for covers each index once, for 1-4 threads and any grain") {
  for (int threads : {1, 2, 3, 4}) {
    ThreadCount tc(threads);
    for (int64_t n : {0, 1, 7, 1000, 100003})
      for (int64_t grain : {1, 64, 1 << 15}) {
        std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
        parallel_for(n, grain, [&](int64_t lo, int64_t hi) {
          for (int64_t i = lo; i < hi; ++i) seen[static_cast<size_t>(i)]++;
        });
        int bad = 0;
        for (auto& s : seen) bad += s.load() != 1;
        CAPTURE(threads);
        CAPTURE(n);
        CAPTURE(grain);
        CHECK(bad == 0);
      }
  }
}

TEST_CASE("chunk boundaries depend only on n, grain and the thread count") {
  ThreadCount tc(3);
  auto bounds = [] {
    std::vector<std::pair<int64_t, int64_t>> b(3, {-1, -1});
    std::atomic<int> k{0};
    parallel_for(1000, 10, [&](int64_t lo, int64_t hi) { b[static_cast<size_t>(k++)] = {lo, hi}; });
    std::sort(b.begin(), b.end());
    return b;
  };
  auto first = bounds();
  CHECK(first == std::vector<std::pair<int64_t, int64_t>>{{0, 333}, {333, 666}, {666, 1000}});
  for (int i = 0; i < 50; ++i) REQUIRE(bounds() == first);
}

TEST_CASE("nested parallel_for runs inline; the thread count can change between calls") {
  ThreadCount tc(2);
  std::atomic<int64_t> total{0};
  parallel_for(4, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      parallel_for(100, 1, [&](int64_t a, int64_t b) { total += b - a; });
  });
  CHECK(total == 400);
  set_num_threads(1);
  CHECK(num_threads() == 1);
  set_num_threads(3);
  CHECK(num_threads() == 3);
  std::atomic<int> chunks{0};
  parallel_for(3, 1, [&](int64_t, int64_t) { chunks++; });
  CHECK(chunks == 3);
}

TEST_CASE("many hand-offs, on the spin path and after the workers sleep, lose no job") {
  for (int threads : {2, 4}) {
    ThreadCount tc(threads);
    std::atomic<int64_t> sum{0};
    for (int i = 0; i < 20000; ++i)
      parallel_for(threads, 1, [&](int64_t lo, int64_t hi) { sum += hi - lo; });
    CHECK(sum == 20000 * threads);
    for (int i = 0; i < 5; ++i) {  // let the workers give up spinning and sleep, then wake them
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
      parallel_for(threads, 1, [&](int64_t lo, int64_t hi) { sum += hi - lo; });
    }
    CHECK(sum == 20005 * threads);
  }
}
