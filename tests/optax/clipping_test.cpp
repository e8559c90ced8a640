// optax's clipping (optax/clipping.hpp) against its rules, over 10 steps of the shared gradient
// sequence scaled up so that clipping happens (tolerance: tests/optax/reference.hpp).
#include <cmath>

#include <doctest/doctest.h>

#include "core/ops.hpp"
#include "reference.hpp"

using namespace flaxpp;
using namespace optax_test;

TEST_CASE("clip: each element into [-max_delta, max_delta]") {
  for (int t = 0; t < kSteps; ++t) {
    Tree g{{"w", vec_array({5}, grads_vec(t, 5))}};
    auto [u, s] = optax::clip(0.3).update(g, Tree());
    Vec want = grads_vec(t, 5);
    const double hi = f32(0.3);
    for (double& x : want) x = x > hi ? hi : (x < -hi ? -hi : x);
    check_close(to_vec(u.at("w").array()), want, 0.0, "clip");
  }
  CHECK_THROWS_WITH_AS(optax::clip(-1.0), "clip: max_delta must be >= 0, got -1.000000",
                       std::invalid_argument);
}

TEST_CASE("clip_by_block_rms: each leaf over max(1, rms / threshold)") {
  for (int t = 0; t < kSteps; ++t) {
    Tree g{{"a", vec_array({5}, grads_vec(t, 5))}, {"b", vec_array({3}, grads_vec(t, 3, 1))}};
    auto [u, s] = optax::clip_by_block_rms(0.4).update(g, Tree());
    for (const char* leaf : {"a", "b"}) {
      Vec x = to_vec(g.at(leaf).array());
      double ss = 0;
      for (double v : x) ss += v * v;
      double denom = std::max(1.0, std::sqrt(ss / static_cast<double>(x.size())) / f32(0.4));
      for (double& v : x) v /= denom;
      check_close(to_vec(u.at(leaf).array()), x, kRel, std::string("block rms ") + leaf);
    }
  }
}

TEST_CASE("clip_by_global_norm") {
  Tree g{{"a", Array::vector({3.f})}, {"b", Array::vector({4.f})}};
  auto [c, s] = optax::clip_by_global_norm(1.0).update(g, Tree());
  CHECK(c.at("a").array().item<float>() == doctest::Approx(0.6));
  CHECK(c.at("b").array().item<float>() == doctest::Approx(0.8));
  auto [c2, s2] = optax::clip_by_global_norm(10.0).update(g, Tree());
  CHECK(c2.at("b").array().item<float>() == 4.f);
}
