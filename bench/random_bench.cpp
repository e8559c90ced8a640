// jax.random throughput: 10^7 normals / truncated normals on one thread and on all threads, and
// the 31M truncated normals of a large model's init (target: < 0.25 s on 2 cores).
//   build-*/bin/random_bench [--benchmark_filter=TruncatedNormal]
#include <cstdint>

#include <benchmark/benchmark.h>

#include "core/random.hpp"

namespace rnd = flaxpp::random;

namespace {

// state.range(0): element count; state.range(1): threads (0 = all).
template <class Draw>
void run(benchmark::State& state, Draw draw) {
  const int64_t n = state.range(0);
  rnd::set_num_threads(static_cast<int>(state.range(1)));
  rnd::Key key = rnd::PRNGKey(0);
  for (auto _ : state) {
    key = rnd::fold_in(key, 1);
    flaxpp::Array a = draw(key, n);
    benchmark::DoNotOptimize(a.raw());
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.counters["threads"] = rnd::num_threads();
  rnd::set_num_threads(0);
}

void BM_Bits(benchmark::State& s) {
  run(s, [](rnd::Key k, int64_t n) { return rnd::bits(k, {n}); });
}
void BM_Uniform(benchmark::State& s) {
  run(s, [](rnd::Key k, int64_t n) { return rnd::uniform(k, {n}); });
}
void BM_Normal(benchmark::State& s) {
  run(s, [](rnd::Key k, int64_t n) { return rnd::normal(k, {n}); });
}
void BM_TruncatedNormal(benchmark::State& s) {
  run(s, [](rnd::Key k, int64_t n) { return rnd::truncated_normal(k, -2.f, 2.f, {n}); });
}
void BM_TruncatedNormalLegacy(benchmark::State& s) {
  rnd::ScopedBitsMode legacy(rnd::BitsMode::legacy);
  run(s, [](rnd::Key k, int64_t n) { return rnd::truncated_normal(k, -2.f, 2.f, {n}); });
}

constexpr int64_t k10M = 10'000'000, k31M = 31'000'000;

}  // namespace

BENCHMARK(BM_Bits)->Args({k10M, 1})->Args({k10M, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Uniform)
    ->Args({k10M, 1})
    ->Args({k10M, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Normal)
    ->Args({k10M, 1})
    ->Args({k10M, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_TruncatedNormal)
    ->Args({k10M, 1})
    ->Args({k10M, 0})
    ->Args({k31M, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_TruncatedNormalLegacy)->Args({k31M, 0})->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
