// Per-example gradients of a 784-256-10 tanh MLP at batch 128 (the vmap benchmark):
//
//   build/bin/vmap_bench [--reps N]
//
// vmap_grad: vmap(grad(loss), {none, 0, 0})(params, xs, ys), every per-example gradient at
//            once (W1's is (128, 784, 256), 103 MB);
// loop_grad: grad(loss) called once per example (the same 128 gradients, as 128 arrays);
// batched:   grad of the mean loss over the batch (one gradient: the cost of the products);
// write:     filling a fresh (128, 784, 256) float32 array once (the floor for vmap_grad).
// Prints the median wall time of each over --reps runs (default 7) and the ratios.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/inputs.hpp"
#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/vmap.hpp"

using namespace flaxpp;

namespace {

using bench::filled;

template <class F>
double median_ms(int reps, F f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    auto start = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                    .count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 7;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--reps") reps = std::atoi(argv[i + 1]);
  const int64_t batch = 128, in = 784, hidden = 256, out = 10;
  std::vector<Array> params = {filled({in, hidden}, 1) * 0.05f, jnp::zeros({hidden}),
                               filled({hidden, out}, 2) * 0.1f, jnp::zeros({out})};
  Array xs = filled({batch, in}, 3);
  std::vector<int32_t> labels(batch);
  for (int64_t i = 0; i < batch; ++i) labels[i] = static_cast<int32_t>(i % out);
  Array ys = jnp::one_hot(Array::from({batch}, labels), out);
  // One example's loss: x (784,), y one-hot (10,).
  auto loss = [](const std::vector<Array>& p, const Array& x, const Array& y) {
    Array h = jnp::tanh(jnp::matmul(x, p[0]) + p[1]);
    Array logits = jnp::matmul(h, p[2]) + p[3];
    return -jnp::sum(jnp::log_softmax(logits) * y);
  };
  auto per_example = vmap(grad(loss), {none, 0, 0});
  std::vector<Array> check = per_example(params, xs, ys);
  std::printf("vmap_grad: W1 gradients %s\n", to_string(check[0].shape()).c_str());

  double t_vmap = median_ms(reps, [&] { std::vector<Array> g = per_example(params, xs, ys); });
  double t_loop = median_ms(reps, [&] {
    std::vector<std::vector<Array>> gs;
    for (int64_t i = 0; i < batch; ++i)
      gs.push_back(grad(loss)(params, jnp::index(xs, i), jnp::index(ys, i)));
  });
  auto mean_loss = [&](const std::vector<Array>& p) {
    Array h = jnp::tanh(jnp::matmul(xs, p[0]) + p[1]);
    Array logits = jnp::matmul(h, p[2]) + p[3];
    return -jnp::mean(jnp::sum(jnp::log_softmax(logits) * ys, {-1}));
  };
  double t_batched = median_ms(reps, [&] { std::vector<Array> g = grad(mean_loss)(params); });
  double t_write = median_ms(reps, [&] {
    Array a = Array::empty({batch, in, hidden}, DType::float32);
    std::fill_n(a.mutable_data<float>(), a.size(), 1.f);
  });
  std::printf(
      "median of %d runs (ms): vmap_grad %.2f  loop_grad %.2f  batched_grad %.2f  "
      "write_result %.2f\n",
      reps, t_vmap, t_loop, t_batched, t_write);
  std::printf(
      "ratios: loop_grad / vmap_grad %.2f  vmap_grad / write_result %.2f  "
      "vmap_grad / batched_grad %.2f\n",
      t_loop / t_vmap, t_vmap / t_write, t_vmap / t_batched);
  return 0;
}
