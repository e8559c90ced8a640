// scale_by_factored_rms (optax/factorized.hpp): which axes are factored (numpy's argsort of the
// shape), the step offset of the decay, and one step against the rule in double (tolerance:
// tests/optax/reference.hpp). Adafactor's 10-step sequence is in alias_test.
#include <cmath>

#include <doctest/doctest.h>

#include "core/ops.hpp"
#include "reference.hpp"

using namespace flaxpp;
using namespace optax_test;

TEST_CASE("the two largest axes are factored; smaller or 1-d leaves keep a full moment") {
  Tree p{{"k3", jnp::zeros({4, 2, 5})}, {"sq", jnp::zeros({3, 3})}, {"v", jnp::zeros({7})}};
  Tree st = optax::scale_by_factored_rms(true, 0.8, 0, 3).init(p);
  // (4, 2, 5): d1 = axis 0 (4), d0 = axis 2 (5): v_row drops axis 2, v_col drops axis 0.
  CHECK(st["v_row"]["k3"].array().shape() == Shape{4, 2});
  CHECK(st["v_col"]["k3"].array().shape() == Shape{2, 5});
  // A tie keeps axis order (argsort [0, 1]): d1 = 0, d0 = 1.
  CHECK(st["v_row"]["sq"].array().shape() == Shape{3});
  CHECK(st["v"]["v"].array().shape() == Shape{7});
  CHECK(st["v_row"]["v"].array().shape() == Shape{1});
  Tree off = optax::scale_by_factored_rms(false).init(p);
  CHECK(off["v"]["k3"].array().shape() == Shape{4, 2, 5});
  CHECK_THROWS_WITH_AS(optax::scale_by_factored_rms().update(p, st),
                       "scale_by_factored_rms: update() needs the params", std::invalid_argument);
}

TEST_CASE("step_offset shifts the decay schedule: 1 - (count - offset + 1)^-rate") {
  Tree p{{"v", vec_array({3}, {0.1, 0.2, 0.3})}};
  auto tx = optax::scale_by_factored_rms(true, 0.8, /*step_offset=*/-4);
  Tree st = tx.init(p);
  auto [u, s] = tx.update(grads_like(p, 0), st, p);
  double d = 1.f - std::pow(5.f, -0.8f);  // count 0 - (-4) + 1 = 5
  Vec g = grads_vec(0, 3), want(3), v(3);
  for (size_t i = 0; i < 3; ++i) {
    v[i] = (1 - d) * (g[i] * g[i] + f32(1e-30));
    want[i] = g[i] * std::pow(v[i], -0.5);
  }
  check_close(to_vec(s["v"]["v"].array()), v, kRel, "v");
  check_close(to_vec(u.at("v").array()), want, kRel, "update");
  CHECK(s["count"].array().item<int32_t>() == 1);
}
