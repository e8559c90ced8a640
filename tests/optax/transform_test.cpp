// optax's building blocks (optax/transform.hpp) not already covered through an optimizer in
// alias_test: ema, the parameter-dependent scalings, incremental_update. 10-step sequences
// against the rules in double (tolerance: tests/optax/reference.hpp).
#include <cmath>

#include <doctest/doctest.h>

#include "reference.hpp"

using namespace flaxpp;
using namespace optax_test;

namespace {
const Vec kP0{-0.5, -0.2, 0.1, 0.4, 0.7};
Tree P() { return Tree{{"w", vec_array({5}, kP0)}}; }
}  // namespace

TEST_CASE("ema: debiased and not, state {count, ema}") {
  for (bool debias : {true, false}) {
    const double d = 0.8;
    auto tx = optax::ema(d, debias);
    Tree st;
    auto got = run_updates(tx, P(), &st);
    Vec e(5, 0);  // e = (1 - d) g + d e; out e / (1 - d^t) when debiased
    for (int t = 1; t <= kSteps; ++t) {
      Vec g = grads_vec(t - 1, 5), want(5);
      for (size_t i = 0; i < 5; ++i) {
        e[i] = f32(1 - d) * g[i] + f32(d) * e[i];
        want[i] = debias ? e[i] / bc32(d, t) : e[i];
      }
      check_close(to_vec(got[t - 1].at("w").array()), want, kRel, "ema step " + std::to_string(t));
    }
    CHECK(st.keys() == std::vector<std::string>{"count", "ema"});
    CHECK(st["count"].array().item<int32_t>() == 10);
    check_checkpoint_round_trip(tx, P(), "ema");
  }
}

TEST_CASE("scale_by_trust_ratio and scale_by_param_block_rms follow |p| and rms(p)") {
  Tree p = P();
  Vec g0 = grads_vec(0, 5);
  double pn = 0, gn = 0, ps = 0;
  for (size_t i = 0; i < 5; ++i) pn += kP0[i] * kP0[i], gn += g0[i] * g0[i], ps += kP0[i] * kP0[i];
  auto [u, s] = optax::scale_by_trust_ratio().update(grads_like(p, 0), Tree(), p);
  Vec want(5);
  for (size_t i = 0; i < 5; ++i) want[i] = g0[i] * (std::sqrt(pn) / std::sqrt(gn));
  check_close(to_vec(u.at("w").array()), want, kRel, "trust ratio");
  // A zero parameter (or update) norm gives a ratio of 1.
  Tree zero{{"w", vec_array({5}, Vec(5, 0))}};
  auto [u0, s0] = optax::scale_by_trust_ratio().update(grads_like(p, 0), Tree(), zero);
  CHECK(tree_equal(u0, grads_like(p, 0)));
  auto [r, s1] = optax::scale_by_param_block_rms().update(grads_like(p, 0), Tree(), p);
  for (size_t i = 0; i < 5; ++i) want[i] = g0[i] * std::sqrt(ps / 5);
  check_close(to_vec(r.at("w").array()), want, kRel, "param block rms");
  auto [r0, s2] = optax::scale_by_param_block_rms().update(grads_like(p, 0), Tree(), zero);
  for (size_t i = 0; i < 5; ++i) want[i] = g0[i] * f32(1e-3);  // min_scale
  check_close(to_vec(r0.at("w").array()), want, kRel, "param block rms floor");
  CHECK_THROWS_WITH_AS(optax::scale_by_trust_ratio().update(p, Tree()),
                       "scale_by_trust_ratio: update() needs the params", std::invalid_argument);
}

TEST_CASE("incremental_update, identity and trace's layout") {
  Tree a{{"w", vec_array({2}, {1.0, 2.0})}}, b{{"w", vec_array({2}, {3.0, -1.0})}};
  Tree m = optax::incremental_update(a, b, 0.25);  // 0.25 a + 0.75 b
  check_close(to_vec(m.at("w").array()), {0.25 * 1 + 0.75 * 3, 0.25 * 2 - 0.75}, kRel,
              "incremental");
  auto [u, s] = optax::identity().update(a, optax::identity().init(a));
  CHECK(tree_equal(u, a));
  CHECK(s.empty());
  CHECK(optax::trace(0.9).init(a).keys() == std::vector<std::string>{"trace"});
}
