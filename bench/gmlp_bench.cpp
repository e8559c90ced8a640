// gMLP timings: init, forward and forward+backward (value_and_grad of models::next_token_loss)
// of the two configs of shared/bench/README.md, next to their matrix-product FLOPs:
//   i   gMLP(num_tokens=20000, dim=512, depth=4), original mode (gmlp_flax's README), (1, 1000)
//   ii  gMLP(num_tokens=256, dim=128, depth=4, seq_len=128), spatial, causal, tokens (16, 128)
// init is Flax's: it runs one forward pass (flax.linen init always does). init_params_only runs
// init on a single token, which gives the same parameters (their shapes do not depend on L) and
// costs only the random draws. Target: README-model parameter init under 0.5 s.
//
// FLOPs count matrix products only, 2*M*N*K each, the full L x L spatial product included (as
// torch_bench.py's forward_matmul_flops); forward+backward counts 3x the forward products (the
// backward of each product is two products of the same size). Times are wall-clock medians of
// the repetitions; FLOP/s is per repetition.
//   build-*/bin/gmlp_bench [--benchmark_filter=ii/] [--benchmark_repetitions=5]
#include <cstdint>
#include <optional>
#include <string>

#include <benchmark/benchmark.h>

#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "core/tree.hpp"
#include "models/gmlp.hpp"

using namespace flaxpp;
namespace rnd = flaxpp::random;

namespace {

struct Config {
  std::string name;
  models::gMLP model;
  int64_t batch, seq;
};

const Config& config(int i) {
  static const Config configs[] = {
      {"i", {.num_tokens = 20000, .dim = 512, .depth = 4}, 1, 1000},
      {"ii", {.num_tokens = 256, .dim = 128, .depth = 4, .seq_len = 128}, 16, 128},
  };
  return configs[i];
}

// Matrix-product FLOPs of one forward pass (2*M*N*K per product).
double forward_flops(const Config& c) {
  const auto& m = c.model;
  const double M = static_cast<double>(c.batch * c.seq), L = static_cast<double>(c.seq),
               B = static_cast<double>(c.batch);
  const double d = static_cast<double>(m.dim), ff = d * static_cast<double>(m.ff_mult), h = ff / 2;
  double per_layer = 2 * M * (d * ff + h * h + h * d);  // proj_in, sgu.proj_out, proj_out
  if (m.seq_len) per_layer += 2 * B * L * L * h;        // W (L, L) @ gate (L, h)
  if (m.attn_dim) {
    const double a = static_cast<double>(*m.attn_dim);
    per_layer +=
        2 * M * d * 3 * a + 2 * 2 * B * L * L * a + 2 * M * a * h;  // to_qkv, q k^T, attn v, to_out
  }
  return static_cast<double>(m.depth) * per_layer +
         2 * M * d * static_cast<double>(*m.num_tokens);  // + logits
}

const Array& tokens(int i) {
  static std::optional<Array> t[2];
  if (!t[i])
    t[i] = rnd::randint(rnd::PRNGKey(0), {config(i).batch, config(i).seq}, 0,
                        *config(i).model.num_tokens);
  return *t[i];
}

const Tree& variables(int i) {
  static std::optional<Tree> v[2];
  if (!v[i]) v[i] = config(i).model.init(rnd::PRNGKey(0), tokens(i));
  return *v[i];
}

void set_flops(benchmark::State& state, double flops) {
  state.counters["FLOP"] = benchmark::Counter(flops);
  state.counters["FLOP/s"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_init(benchmark::State& state, int i) {
  const Config& c = config(i);
  for (auto _ : state) {
    Tree v = c.model.init(rnd::PRNGKey(0), tokens(i));
    benchmark::DoNotOptimize(v);
  }
  set_flops(state, forward_flops(c));
  state.counters["params"] = static_cast<double>(param_count(variables(i)));
}

void BM_init_params_only(benchmark::State& state, int i) {
  const Config& c = config(i);
  Array one = jnp::slice(tokens(i), 1, 0, 1);  // (B, 1): same parameters, negligible forward
  for (auto _ : state) {
    Tree v = c.model.init(rnd::PRNGKey(0), one);
    benchmark::DoNotOptimize(v);
  }
  state.counters["params"] = static_cast<double>(param_count(variables(i)));
}

void BM_forward(benchmark::State& state, int i) {
  const Config& c = config(i);
  const Tree& v = variables(i);
  for (auto _ : state) {
    Array logits = c.model.apply(v, tokens(i));
    benchmark::DoNotOptimize(logits);
  }
  set_flops(state, forward_flops(c));
}

void BM_fwd_bwd(benchmark::State& state, int i) {
  const Config& c = config(i);
  const Tree& params = variables(i)["params"];
  const Array& t = tokens(i);
  auto loss = [&](const Tree& p) {
    return models::next_token_loss(c.model.apply(Tree{{"params", p}}, t), t);
  };
  for (auto _ : state) {
    auto [value, grads] = value_and_grad(loss)(params);
    benchmark::DoNotOptimize(value);
    benchmark::DoNotOptimize(grads);
  }
  set_flops(state, 3 * forward_flops(c));
}

void register_all() {
  for (int i = 0; i < 2; ++i) {
    const std::string n = config(i).name + "/";
    using Fn = void (*)(benchmark::State&, int);
    const std::pair<const char*, Fn> benches[] = {{"init", BM_init},
                                                  {"init_params_only", BM_init_params_only},
                                                  {"forward", BM_forward},
                                                  {"fwd_bwd", BM_fwd_bwd}};
    for (auto [name, fn] : benches)
      benchmark::RegisterBenchmark((n + name).c_str(), fn, i)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->Iterations(i == 0 ? 1 : 3)
          ->Repetitions(3)
          ->ReportAggregatesOnly(true);
  }
  benchmark::AddCustomContext("i",
                              "gMLP(num_tokens=20000, dim=512, depth=4) original mode, tokens (1, "
                              "1000), 31,013,408 params");
  benchmark::AddCustomContext("ii",
                              "gMLP(num_tokens=256, dim=128, depth=4, seq_len=128) causal, tokens "
                              "(16, 128), 794,112 params");
  benchmark::AddCustomContext(
      "FLOP",
      "matrix products only, 2*M*N*K each (L x L spatial product included); fwd_bwd = 3x forward");
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
