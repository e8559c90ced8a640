// Concurrency: init, apply and grad on shared variables from several threads at once give results
// bit-identical to a single-threaded run. Threads also mix compatibility profiles (the random bit
// mode is a per-thread override of a process-wide setting) and rng streams. scripts/check runs
// this binary under ThreadSanitizer (build-tsan/), so any data race in the module system, the
// autodiff tape or random's global settings fails there.
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "core/autodiff.hpp"
#include "core/random.hpp"
#include "models/gmlp.hpp"
#include "nn/nn.hpp"
#include "serialization/serialization.hpp"

using namespace flaxpp;
namespace rnd = flaxpp::random;

namespace {

constexpr int kThreads = 4;
constexpr int kRounds = 3;

// A small gMLP with everything on: spatial gating (causal), tiny attention, two blocks.
const models::gMLP& model() {
  static const models::gMLP m{.num_tokens = 32, .dim = 16, .depth = 2, .attn_dim = 8, .seq_len = 8};
  return m;
}
Array tokens() { return rnd::randint(rnd::PRNGKey(3), {2, 8}, 0, 32); }

// Runs fn(thread_index, round) on kThreads threads released together; results are collected and
// compared on the calling thread (doctest's assertions stay single-threaded).
template <class R, class F>
std::vector<R> on_threads(F fn) {
  std::vector<R> out(kThreads * kRounds);
  std::latch go(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      go.arrive_and_wait();
      for (int r = 0; r < kRounds; ++r) out[static_cast<size_t>(t * kRounds + r)] = fn(t, r);
    });
  for (auto& th : threads) th.join();
  return out;
}

}  // namespace

TEST_CASE("concurrent apply on the same variables is bit-identical to a single-threaded run") {
  const Array x = tokens();
  const Tree vars = model().init(rnd::PRNGKey(0), x);
  const Tree expected = Tree(model().apply(vars, x));
  auto got = on_threads<Tree>([&](int, int) { return Tree(model().apply(vars, x)); });
  for (const auto& g : got) CHECK(tree_equal(g, expected));
}

TEST_CASE("concurrent init with the same key, under mixed compatibility profiles") {
  const Array x = tokens();
  // Odd threads run the 2021 profile (legacy random bits, set per thread by init), even threads
  // the current one; each must match its own single-threaded reference.
  const Tree expected_current = model().init(rnd::PRNGKey(0), x);
  const Tree expected_2021 = model().init(rnd::PRNGKey(0), x, nn::Compat::v2021);
  REQUIRE(!tree_equal(expected_current, expected_2021));
  auto got = on_threads<Tree>([&](int t, int) {
    return t % 2 ? model().init(rnd::PRNGKey(0), x, nn::Compat::v2021)
                 : model().init(rnd::PRNGKey(0), x);
  });
  for (int t = 0; t < kThreads; ++t)
    for (int r = 0; r < kRounds; ++r)
      CHECK_MESSAGE(tree_equal(got[static_cast<size_t>(t * kRounds + r)],
                               t % 2 ? expected_2021 : expected_current),
                    "thread " << t << " round " << r);
  // The process-wide mode is untouched by the per-thread overrides.
  CHECK(rnd::bits_mode() == rnd::BitsMode::partitionable);
}

TEST_CASE("concurrent value_and_grad on shared parameters") {
  const Array x = tokens();
  const Tree params = model().init(rnd::PRNGKey(0), x)["params"];
  auto loss = [&](const Tree& p) {
    return models::next_token_loss(model().apply(Tree{{"params", p}}, x), x);
  };
  auto [l0, g0] = value_and_grad(loss)(params);
  const Tree expected{{"loss", l0}, {"grads", g0}};
  auto got = on_threads<Tree>([&](int, int) {
    auto [l, g] = value_and_grad(loss)(params);
    return Tree{{"loss", l}, {"grads", g}};
  });
  for (const auto& g : got) CHECK(tree_equal(g, expected));
}

TEST_CASE("concurrent dropout apply: per-call rng streams, no shared state") {
  struct Net : nn::Module<Net> {
    Array operator()(nn::Scope& s, const Array& x) const {
      return s(nn::Dropout{.rate = 0.5}, s(nn::Dense{.features = 64}, x), false);
    }
  };
  const Array x = rnd::normal(rnd::PRNGKey(1), {8, 32});
  const Tree vars =
      Net{}.init(nn::Rngs{{"params", rnd::PRNGKey(0)}, {"dropout", rnd::PRNGKey(0)}}, x);
  std::vector<Tree> expected;
  for (int t = 0; t < kThreads; ++t)
    expected.push_back(Tree(Net{}.apply(vars, x, nn::Rngs{{"dropout", rnd::PRNGKey(100 + t)}})));
  auto got = on_threads<Tree>([&](int t, int) {
    return Tree(Net{}.apply(vars, x, nn::Rngs{{"dropout", rnd::PRNGKey(100 + t)}}));
  });
  for (int t = 0; t < kThreads; ++t)
    for (int r = 0; r < kRounds; ++r)
      CHECK(tree_equal(got[static_cast<size_t>(t * kRounds + r)], expected[t]));
}

TEST_CASE("concurrent serialization of one shared tree") {
  const Tree vars = model().init(rnd::PRNGKey(0), tokens());
  const auto bytes = to_bytes(vars);
  const std::string json = to_json(vars);
  auto got = on_threads<Tree>([&](int t, int) {
    Tree back = t % 2 ? from_bytes(vars, to_bytes(vars)) : from_json(vars, to_json(vars));
    return Tree{{"back", back},
                {"same_bytes", Array(to_bytes(vars) == bytes && to_json(vars) == json)}};
  });
  for (const auto& g : got) {
    CHECK(tree_equal(g["back"], vars));
    CHECK(g["same_bytes"].array().item<bool>());
  }
}
