// pipeline_bench: what data::Loader's prefetch thread saves per training step. A small
// gMLPVision (the train_fashion_mnist model, dim 32, depth 2) trains on Fashion-MNIST-shaped
// synthetic images with the example's --augment transform (shift and flip); each timed step is
// loader.next() + value_and_grad + apply_gradients, once with prefetch 0 (the batch is gathered
// and augmented on the step's critical path) and once with prefetch 2 (a thread has it ready).
// Both runs see the same batches (checked: equal final params). Prints the median step times
// and their ratio.
//
//   build/bin/pipeline_bench [--steps 60] [--batch 128] [--threads 0]
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/harness.hpp"
#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/parallel.hpp"
#include "core/random.hpp"
#include "data/augment.hpp"
#include "data/loader.hpp"
#include "models/gmlp.hpp"
#include "nn/losses.hpp"
#include "optax/optax.hpp"
#include "training/train_state.hpp"

using namespace flaxpp;

namespace {

struct Result {
  std::vector<double> ms;
  Tree params;
  int64_t hits = 0;
};

Result train(int prefetch, int64_t steps, int64_t batch, const data::Dataset& ds) {
  models::gMLPVision model{
      .image_size = 28, .patch_size = 7, .num_classes = 10, .dim = 32, .depth = 2, .ff_mult = 2};
  auto keys = random::split(random::PRNGKey(0), 3);
  Tree params = model.init(keys[0], jnp::zeros({1, 28, 28, 1}))["params"];
  auto state = training::TrainState::create(params, optax::adam(1e-3), keys[1]);
  data::LoaderOptions o{.batch_size = batch, .prefetch = prefetch};
  o.transform = [](const Tree& b, random::Key k) {
    auto ks = random::split(k);
    Array x = data::random_crop(b["image"].array(), ks[0], 2);
    return b.set("image", Tree(data::random_flip_left_right(x, ks[1])));
  };
  data::Loader loader(ds, keys[2], o);
  auto loss_fn = [&](const Tree& p, const Array& x, const Array& y) {
    Array logits = model.apply(Tree{{"params", p}}, x, /*deterministic=*/true);
    return jnp::mean(optax::softmax_cross_entropy_with_integer_labels(logits, y));
  };
  Result r;
  const int64_t warmup = 3;
  for (int64_t s = 0; s < steps + warmup; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    data::Batch b = loader.next();
    auto [loss, grads] =
        value_and_grad(loss_fn)(state.params, b.data["image"].array(), b.data["label"].array());
    state = state.apply_gradients(grads);
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (s >= warmup) r.ms.push_back(ms);
  }
  r.params = state.params;
  r.hits = loader.ready_hits();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t steps = 60, batch = 128, n = 4096;
  int threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--steps")
      steps = std::stoll(argv[i + 1]);
    else if (a == "--batch")
      batch = std::stoll(argv[i + 1]);
    else if (a == "--threads")
      threads = std::stoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: pipeline_bench [--steps N] [--batch B] [--threads T]\n");
      return 2;
    }
  }
  if (threads > 0) set_num_threads(threads);
  auto key = random::PRNGKey(1);
  auto ds = data::Dataset::from_arrays(
      Tree{{"image", random::normal(random::fold_in(key, 0), {n, 28, 28, 1})},
           {"label", random::randint(random::fold_in(key, 1), {n}, 0, 10)}});
  std::printf(
      "pipeline_bench: gMLPVision(dim 32, depth 2, patch 7), batch %lld, %lld timed "
      "steps, augment on, %d pool threads, %s\n",
      static_cast<long long>(batch), static_cast<long long>(steps), num_threads(),
      bench::cpu_model().c_str());
  {  // the data work alone: gather + augment of one batch, what prefetch can take off the path
    data::LoaderOptions o{.batch_size = batch};
    o.transform = [](const Tree& b, random::Key k) {
      auto ks = random::split(k);
      Array x = data::random_crop(b["image"].array(), ks[0], 2);
      return b.set("image", Tree(data::random_flip_left_right(x, ks[1])));
    };
    data::Loader l(ds, random::PRNGKey(2), o);
    std::vector<double> ms;
    for (int64_t s = 0; s < steps; ++s) {
      auto t0 = std::chrono::steady_clock::now();
      l.at(s);
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("one batch's data work (Loader::at): median %.2f ms\n", bench::median(ms));
  }
  Result off = train(0, steps, batch, ds), on = train(2, steps, batch, ds);
  double m_off = bench::median(off.ms), m_on = bench::median(on.ms);
  std::printf("prefetch 0: median %.2f ms/step\n", m_off);
  std::printf("prefetch 2: median %.2f ms/step (%lld of %lld batches were ready)\n", m_on,
              static_cast<long long>(on.hits), static_cast<long long>(steps + 3));
  std::printf("ratio (prefetch 0 / prefetch 2): %.3f\n", m_off / m_on);
  bool same = tree_equal(off.params, on.params);
  std::printf("same final params: %s\n", same ? "yes" : "NO");
  return same ? 0 : 1;
}
