// Op-level benchmarks: what flaxpp's primitives cost next to the plain code they wrap.
//
//   build/bin/ops_bench                                   # everything
//   build/bin/ops_bench --benchmark_filter='matmul'       # matmul vs cblas_sgemm
//   build/bin/ops_bench --benchmark_filter='overhead'     # per-primitive overhead, 1 element
//
// matmul/N and cblas_sgemm/N: GFLOP = 2 N^3 per call, as a rate (target: within 10%).
// add, exp vs loop_add, loop_exp: GB = bytes read + written, as a rate.
// overhead_*: one primitive on 1-element arrays, forward alone and inside grad (targets: < 1 us
// forward, < 3 us forward + backward). mlp_grad: one grad of a 784-256-10 tanh MLP, batch 64.
// Timings with several threads (BLAS) use wall time; the rest are process CPU time. On a shared
// machine, compare pairs with --benchmark_enable_random_interleaving=true and repetitions, and
// run matmul apart from the elementwise rows (or with OPENBLAS_NUM_THREADS=1): OpenBLAS workers
// keep spinning for a while after each call and their CPU time lands on whatever runs next.
#include <cblas.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/inputs.hpp"
#include "core/autodiff.hpp"
#include "core/ops.hpp"

using namespace flaxpp;

namespace {

using bench::filled;

void set_rate(benchmark::State& state, const char* name, double per_iteration) {
  state.counters[name] = benchmark::Counter(
      per_iteration * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

// ---- matmul vs cblas_sgemm ---------------------------------------------------------------------

void BM_matmul(benchmark::State& state) {
  int64_t n = state.range(0);
  Array a = filled({n, n}, 1), b = filled({n, n}, 2);
  for (auto _ : state) benchmark::DoNotOptimize(jnp::matmul(a, b));
  set_rate(state, "GFLOP", 2.0 * n * n * n);
}
BENCHMARK(BM_matmul)
    ->RangeMultiplier(2)
    ->Range(128, 2048)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

void BM_cblas_sgemm(benchmark::State& state) {
  int64_t n = state.range(0);
  Array a = filled({n, n}, 1), b = filled({n, n}, 2);
  std::vector<float> c(static_cast<size_t>(n * n));
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a.data<float>(), n,
                b.data<float>(), n, 0.f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  set_rate(state, "GFLOP", 2.0 * n * n * n);
}
BENCHMARK(BM_cblas_sgemm)
    ->RangeMultiplier(2)
    ->Range(128, 2048)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// ---- elementwise vs plain loops ------------------------------------------------------------------

void BM_add(benchmark::State& state) {
  int64_t n = state.range(0);
  Array a = filled({n}, 1), b = filled({n}, 2);
  for (auto _ : state) benchmark::DoNotOptimize(a + b);
  set_rate(state, "GB", 12.0 * n);
}
BENCHMARK(BM_add)->Arg(1 << 14)->Arg(1 << 20)->Arg(1 << 24);

void BM_loop_add(benchmark::State& state) {
  int64_t n = state.range(0);
  Array a = filled({n}, 1), b = filled({n}, 2);
  std::vector<float> c(static_cast<size_t>(n));
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  for (auto _ : state) {
    for (int64_t i = 0; i < n; ++i) c[i] = pa[i] + pb[i];
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_rate(state, "GB", 12.0 * n);
}
BENCHMARK(BM_loop_add)->Arg(1 << 14)->Arg(1 << 20)->Arg(1 << 24);

// The same loop into a fresh buffer per call, as an op must return one: above glibc's mmap
// threshold (32 MiB at most) every call pays page faults on first touch.
void BM_loop_add_fresh(benchmark::State& state) {
  int64_t n = state.range(0);
  Array a = filled({n}, 1), b = filled({n}, 2);
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  for (auto _ : state) {
    std::unique_ptr<float[]> c(new float[static_cast<size_t>(n)]);
    for (int64_t i = 0; i < n; ++i) c[i] = pa[i] + pb[i];
    benchmark::DoNotOptimize(c.get());
    benchmark::ClobberMemory();
  }
  set_rate(state, "GB", 12.0 * n);
}
BENCHMARK(BM_loop_add_fresh)->Arg(1 << 14)->Arg(1 << 20)->Arg(1 << 24);

void BM_exp(benchmark::State& state) {
  int64_t n = state.range(0);
  Array a = filled({n}, 1);
  for (auto _ : state) benchmark::DoNotOptimize(jnp::exp(a));
  set_rate(state, "GB", 8.0 * n);
}
BENCHMARK(BM_exp)->Arg(1 << 14)->Arg(1 << 20)->Arg(1 << 24);

void BM_loop_exp(benchmark::State& state) {
  int64_t n = state.range(0);
  Array a = filled({n}, 1);
  std::vector<float> c(static_cast<size_t>(n));
  const float* pa = a.data<float>();
  for (auto _ : state) {
    for (int64_t i = 0; i < n; ++i) c[i] = std::exp(pa[i]);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_rate(state, "GB", 8.0 * n);
}
BENCHMARK(BM_loop_exp)->Arg(1 << 14)->Arg(1 << 20)->Arg(1 << 24);

// ---- per-primitive overhead on 1-element arrays -------------------------------------------------

void BM_overhead_add(benchmark::State& state) {
  Array x(1.5f), y(2.5f);
  for (auto _ : state) benchmark::DoNotOptimize(x + y);
}
BENCHMARK(BM_overhead_add);

void BM_overhead_exp(benchmark::State& state) {
  Array x(0.5f);
  for (auto _ : state) benchmark::DoNotOptimize(jnp::exp(x));
}
BENCHMARK(BM_overhead_exp);

void BM_overhead_sum(benchmark::State& state) {
  Array x = filled({1}, 3);
  for (auto _ : state) benchmark::DoNotOptimize(jnp::sum(x));
}
BENCHMARK(BM_overhead_sum);

void BM_overhead_matmul(benchmark::State& state) {
  Array a = filled({1, 1}, 1), b = filled({1, 1}, 2);
  for (auto _ : state) benchmark::DoNotOptimize(jnp::matmul(a, b));
}
BENCHMARK(BM_overhead_matmul);

void BM_overhead_reshape(benchmark::State& state) {
  Array x = filled({1}, 3);
  for (auto _ : state) benchmark::DoNotOptimize(jnp::reshape(x, {1, 1}));
}
BENCHMARK(BM_overhead_reshape);

void BM_overhead_take(benchmark::State& state) {
  Array x = filled({1}, 3), i = Array::from({1}, std::vector<int32_t>{0});
  for (auto _ : state) benchmark::DoNotOptimize(jnp::take(x, i));
}
BENCHMARK(BM_overhead_take);

// grad(f)(x) for f = one primitive: trace, record, backward, detach.
void BM_overhead_grad_exp(benchmark::State& state) {
  Array x(0.5f);
  auto df = grad([](const Array& v) { return jnp::exp(v); });
  for (auto _ : state) benchmark::DoNotOptimize(df(x));
}
BENCHMARK(BM_overhead_grad_exp);

void BM_overhead_grad_mul(benchmark::State& state) {
  Array x(0.5f), y(3.f);
  auto df = grad<0, 1>([](const Array& a, const Array& b) { return a * b; });
  for (auto _ : state) benchmark::DoNotOptimize(df(x, y));
}
BENCHMARK(BM_overhead_grad_mul);

// A chain of 16 primitives in one grad: the per-primitive share of forward + backward.
void BM_overhead_grad_chain16(benchmark::State& state) {
  Array x(0.5f);
  auto df = grad([](const Array& v) {
    Array y = v;
    for (int i = 0; i < 8; ++i) y = jnp::tanh(y) * 1.01f;
    return y;
  });
  for (auto _ : state) benchmark::DoNotOptimize(df(x));
  // Seconds per primitive (forward + backward), printed with an SI prefix (e.g. 900n).
  state.counters["per_primitive"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 16,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_overhead_grad_chain16);

// ---- a training step: grad of a 2-layer MLP -----------------------------------------------------

void BM_mlp_grad(benchmark::State& state) {
  const int64_t batch = 64, in = 784, hidden = 256, out = 10;
  std::vector<Array> params = {filled({in, hidden}, 1) * 0.05f, jnp::zeros({hidden}),
                               filled({hidden, out}, 2) * 0.1f, jnp::zeros({out})};
  Array x = filled({batch, in}, 3);
  std::vector<int32_t> labels(batch);
  for (int64_t i = 0; i < batch; ++i) labels[i] = static_cast<int32_t>(i % out);
  Array y = jnp::one_hot(Array::from({batch}, labels), out);
  auto loss = [&](const std::vector<Array>& p) {
    Array h = jnp::tanh(jnp::matmul(x, p[0]) + p[1]);
    Array logits = jnp::matmul(h, p[2]) + p[3];
    return -jnp::mean(jnp::sum(jnp::log_softmax(logits) * y, {-1}));
  };
  auto step = value_and_grad(loss);
  for (auto _ : state) benchmark::DoNotOptimize(step(params));
  // forward 2*b*(in*h + h*out), backward twice that.
  set_rate(state, "GFLOP", 3 * 2.0 * batch * (in * hidden + hidden * out));
}
BENCHMARK(BM_mlp_grad)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
