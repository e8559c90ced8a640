// ceiling_bench: how fast can a gMLP step be on this machine? The floor that matrix products
// alone put under the configs' targets, measured.
//
//   ceiling_bench [--benchmark_*]      (Google Benchmark flags from scripts/bench are ignored)
//   CEILING_VERBOSE=1 ceiling_bench    (also each product's shape, time and rate, on stderr)
//
// 1. FMA peak: a loop of independent 8-wide fused multiply-adds in registers (12 chains, no
//    memory traffic), on 1 thread and on flaxpp::num_threads() threads at once, best of 3.
// 2. For gmlp_bench's configs i, ii and iii (bench/gmlp_configs.hpp, targets included), every
//    matrix product of one training step with the shapes and calls flaxpp makes (fused dense: x W, g W^T, x^T g; the spatial gating's batched
//    W x, W^T g and g x^T accumulated over the batch), each timed alone on warm operands with
//    flaxpp's pool (fastest of 9 calls after 2 warm-ups: this is a floor, and other jobs or the
//    hypervisor taking a core only ever add time). Their sum is the time the products would
//    take if nothing else ran: elementwise work, copies, allocation and the optimizer add to it.
// It prints, per config, the products' time for the forward pass and for forward + backward,
// their rate, and what the targets would need: GFLOP/s over the whole step, and that as a share
// of the FMA peak.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench/gmlp_configs.hpp"
#include "core/gemm.hpp"
#include "core/parallel.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

#if defined(__x86_64__)
// GFLOP/s of one thread running 12 independent AVX2 FMA chains for `iters` rounds. Built for
// AVX2+FMA whatever the build's -march (the portable build is x86-64-v2) and only called where
// the CPU has them. (AVX-512's 16-lane FMA gives the same flops per cycle on Zen 4, which
// double-pumps it, so the 8-lane loop measures the peak the products can reach there too.)
__attribute__((target("avx2,fma"))) double fma_rate_avx2(long iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(1.f + 1e-7f * static_cast<float>(i));
  const __m256 b = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-8f);
  auto t0 = clock_type::now();
  for (long r = 0; r < iters; ++r) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
  }
  double s = seconds_since(t0);
  float sink = 0;
  for (int i = 0; i < 12; ++i) {
    alignas(32) float v[8];
    _mm256_store_ps(v, acc[i]);
    sink += v[0];
  }
  volatile float keep = sink;
  (void)keep;
  return static_cast<double>(iters) * 12 * 16 / s / 1e9;  // 8 lanes x 2 flops per FMA
}
double fma_rate(long iters) {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? fma_rate_avx2(iters) : 0;
}
#else
double fma_rate(long) { return 0; }
#endif

// Total GFLOP/s of `threads` threads running fma_rate at once, best of 3.
double fma_peak(int threads) {
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<double> rates(static_cast<size_t>(threads));
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&rates, t] { rates[static_cast<size_t>(t)] = fma_rate(100'000'000); });
    for (auto& th : pool) th.join();
    double sum = 0;
    for (double r : rates) sum += r;
    best = std::max(best, sum);
  }
  return best;
}

struct Product {
  const char* what;
  bool forward;   // part of the forward pass (else backward only)
  int64_t count;  // batch of independent products (sgemm_batched), or 1
  bool ta, tb;
  int64_t m, n, k;
  bool accumulate;  // `count` products summed into one output (beta = 1 after the first)
  double flops() const { return 2.0 * static_cast<double>(count * m * n * k); }
};

// The products of one training step (forward + backward) of gMLP(num_tokens=V, dim=d, depth,
// ff_mult) on B x L tokens, with the spatial gating when `spatial`.
std::vector<Product> step_products(int64_t V, int64_t d, int64_t ff_mult, int64_t depth, int64_t B,
                                   int64_t L, bool spatial) {
  const int64_t T = B * L, ff = ff_mult * d, c = ff / 2;
  std::vector<Product> p;
  auto dense = [&](const char* what, int64_t in, int64_t out) {
    p.push_back({what, true, 1, false, false, T, out, in, false});  // y = x W
    p.push_back({what, false, 1, false, true, T, in, out, false});  // dx = g W^T
    p.push_back({what, false, 1, true, false, in, out, T, false});  // dW = x^T g
  };
  for (int64_t layer = 0; layer < depth; ++layer) {
    dense("proj_in", d, ff);
    if (spatial) {
      p.push_back({"spatial W x", true, B, false, false, L, c, L, false});
      p.push_back({"spatial W^T g", false, B, true, false, L, c, L, false});
      p.push_back({"spatial g x^T", false, B, false, true, L, L, c, true});
    }
    dense("sgu.proj_out", c, c);
    dense("proj_out", c, d);
  }
  dense("to_logits", d, V);
  return p;
}

// Seconds of one product as flaxpp calls it, operands filled once and reused (warm): the fastest
// of 9 calls, since the machine's noise only ever adds time.
double time_product(const Product& q) {
  const int64_t a_rows = q.ta ? q.k : q.m, a_cols = q.ta ? q.m : q.k;
  const int64_t b_rows = q.tb ? q.n : q.k, b_cols = q.tb ? q.k : q.n;
  // batched products share one A (the spatial W, stride 0)
  std::vector<float> a(static_cast<size_t>(a_rows * a_cols), 0.5f);
  std::vector<float> b(static_cast<size_t>(q.count * b_rows * b_cols), 0.25f);
  std::vector<float> out(static_cast<size_t>((q.accumulate ? 1 : q.count) * q.m * q.n));
  auto call = [&] {
    if (q.count == 1) {
      flaxpp::gemm::sgemm(q.ta, q.tb, q.m, q.n, q.k, 1.f, a.data(), a_cols, b.data(), b_cols, 0.f,
                          out.data(), q.n);
    } else if (q.accumulate) {  // dW of the spatial product: one sgemm per batch entry, summed
      for (int64_t i = 0; i < q.count; ++i)
        flaxpp::gemm::sgemm(q.ta, q.tb, q.m, q.n, q.k, 1.f, b.data() + i * q.m * q.k, q.k,
                            b.data() + i * b_rows * b_cols, b_cols, i ? 1.f : 0.f, out.data(), q.n);
    } else {
      flaxpp::gemm::sgemm_batched(q.count, q.ta, q.tb, q.m, q.n, q.k, a.data(), a_cols, 0, b.data(),
                                  b_cols, b_rows * b_cols, out.data(), q.n, q.m * q.n);
    }
  };
  for (int w = 0; w < 2; ++w) call();
  double best = 1e300;
  for (int r = 0; r < 9; ++r) {
    auto t0 = clock_type::now();
    call();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--benchmark_", 12) == 0) continue;
    std::fprintf(stderr, "ceiling_bench: unknown argument %s (it takes none)\n", argv[i]);
    return 2;
  }
  flaxpp::gemm::use_single_threaded_blas();
  const int threads = flaxpp::num_threads();
  const double peak1 = fma_peak(1), peak = fma_peak(threads);
  std::printf(
      "FMA peak (registers only, best of 3): %.1f GFLOP/s on 1 thread, %.1f on %d threads\n\n",
      peak1, peak, threads);

  std::printf(
      "Matrix products of one step, each timed alone on warm operands (flaxpp::gemm, %d "
      "threads):\n\n",
      threads);
  std::printf(
      "| config | target | products | their GFLOP | products alone (ms) | their GFLOP/s | target "
      "needs GFLOP/s | = share of FMA peak |\n|---|---|---|---|---|---|---|---|\n");
  // gmlp_bench's time targets: the forward pass alone, or forward + backward (+ Adam).
  const std::pair<const char*, const char*> metrics[] = {{"forward_ms", "forward"},
                                                         {"fwd_bwd_ms", "forward + backward"},
                                                         {"train_step_ms", "Adam train step"}};
  for (const bench::Config& c : bench::configs())
    for (auto [key, label] : metrics) {
      auto target = c.targets.find(key);
      if (target == c.targets.end()) continue;
      const bool forward_only = std::string(key) == "forward_ms";
      const auto& m = c.model;
      double flops = 0, secs = 0;
      int n = 0;
      for (const Product& q : step_products(*m.num_tokens, m.dim, m.ff_mult, m.depth, c.batch,
                                            c.seq, m.seq_len.has_value())) {
        if (forward_only && !q.forward) continue;
        flops += q.flops();
        double tq = time_product(q);
        if (std::getenv("CEILING_VERBOSE"))
          std::fprintf(stderr, "  %s %s count=%ld %c%c m=%ld n=%ld k=%ld: %.2f ms, %.0f GFLOP/s\n",
                       c.name.c_str(), q.what, (long)q.count, q.ta ? 'T' : 'N', q.tb ? 'T' : 'N',
                       (long)q.m, (long)q.n, (long)q.k, tq * 1e3, q.flops() / tq / 1e9);
        secs += tq;
        ++n;
      }
      const double need = flops / (target->second * 1e-3) / 1e9;
      std::printf("| %s | %s <= %g ms | %d | %.2f | %.2f | %.0f | %.0f | %.0f%% |\n",
                  c.name.c_str(), label, target->second, n, flops / 1e9, secs * 1e3,
                  flops / secs / 1e9, need, 100 * need / peak);
    }
  std::printf("\nThe products' time is a floor under the step: every other op adds to it.\n");
  return 0;
}
