// optax-style optimizers and schedules against hand-computed updates (double precision on the
// check side; float32 results within 1e-6 relative, the rounding of a handful of float32 ops).
#include "optax/optax.hpp"

#include <cmath>
#include <numbers>

#include <doctest/doctest.h>

#include "core/ops.hpp"
#include "core/random.hpp"

using namespace flaxpp;

namespace {
Tree P(std::vector<float> w) {
  return Tree{{"w", Array::from({static_cast<int64_t>(w.size())}, w)}};
}
std::vector<float> W(const Tree& t) { return t.at("w").array().to_float(); }
void near(const std::vector<float>& got, const std::vector<double>& want, double rel = 1e-6) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(rel));
}
}  // namespace

TEST_CASE("sgd: plain, momentum and nesterov") {
  Tree p = P({1.f, 2.f}), g1 = P({0.5f, -1.f}), g2 = P({0.25f, 2.f});
  auto tx = optax::sgd(0.1);
  auto st = tx.init(p);
  auto [u, s2] = tx.update(g1, st, p);
  near(W(optax::apply_updates(p, u)), {1 - 0.05, 2 + 0.1});

  for (bool nesterov : {false, true}) {
    auto m = optax::sgd(0.1, 0.9, nesterov);
    auto ms = m.init(p);
    auto [u1, ms1] = m.update(g1, ms, p);
    auto [u2, ms2] = m.update(g2, ms1, p);
    for (int i = 0; i < 2; ++i) {
      double a = W(g1)[i], b = W(g2)[i];
      double t1 = a, up1 = nesterov ? a + 0.9 * t1 : t1;
      double t2 = b + 0.9 * t1, up2 = nesterov ? b + 0.9 * t2 : t2;
      CHECK(W(u1)[i] == doctest::Approx(-0.1 * up1).epsilon(1e-6));
      CHECK(W(u2)[i] == doctest::Approx(-0.1 * up2).epsilon(1e-6));
    }
    CHECK(ms2["0"].keys() == std::vector<std::string>{"trace"});
  }
}

TEST_CASE("adam and adamw: two steps against the formulas") {
  Tree p = P({1.f, -2.f, 0.5f}), g1 = P({0.1f, -0.3f, 2.f}), g2 = P({-0.2f, 0.05f, 1.f});
  const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.05;
  for (bool decoupled : {false, true}) {
    auto tx = decoupled ? optax::adamw(lr, b1, b2, eps, wd) : optax::adam(lr, b1, b2, eps);
    auto st = tx.init(p);
    Tree params = p;
    auto p0 = W(p);
    std::vector<double> m(3, 0), v(3, 0), ref(p0.begin(), p0.end());
    int t = 0;
    for (const Tree& g : {g1, g2}) {
      auto [u, ns] = tx.update(g, st, params);
      st = ns;
      params = optax::apply_updates(params, u);
      ++t;
      for (int i = 0; i < 3; ++i) {
        double gi = W(g)[i];
        m[i] = (1 - b1) * gi + b1 * m[i];
        v[i] = (1 - b2) * gi * gi + b2 * v[i];
        double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
        double upd = mh / (std::sqrt(vh) + eps) + (decoupled ? wd * ref[i] : 0.0);
        ref[i] -= lr * upd;
      }
      near(W(params), ref, 2e-6);
    }
    CHECK(st["0"]["count"].array().item<int32_t>() == 2);
    CHECK(st["0"].keys() == std::vector<std::string>{"count", "mu", "nu"});
  }
}

TEST_CASE("adamw mask excludes leaves from weight decay") {
  Tree p{{"kernel", Array::vector({1.f})}, {"bias", Array::vector({1.f})}};
  Tree zero{{"kernel", Array::vector({0.f})}, {"bias", Array::vector({0.f})}};
  auto tx = optax::adamw(0.1, 0.9, 0.999, 1e-8, 0.5,
                         [](const std::string& path) { return path != "bias"; });
  auto [u, s] = tx.update(zero, tx.init(p), p);
  CHECK(u.at("kernel").array().item<float>() == doctest::Approx(-0.05));
  CHECK(u.at("bias").array().item<float>() == 0.f);
}

TEST_CASE("clip_by_global_norm and chain") {
  Tree g{{"a", Array::vector({3.f})}, {"b", Array::vector({4.f})}};
  CHECK(optax::global_norm(g).item<float>() == 5.f);
  auto [c, s] = optax::clip_by_global_norm(1.0).update(g, Tree());
  CHECK(c.at("a").array().item<float>() == doctest::Approx(0.6));
  CHECK(c.at("b").array().item<float>() == doctest::Approx(0.8));
  auto [c2, s2] = optax::clip_by_global_norm(10.0).update(g, Tree());
  CHECK(c2.at("b").array().item<float>() == 4.f);
  auto tx = optax::chain({optax::clip_by_global_norm(1.0), optax::sgd(1.0)});
  auto [u, st] = tx.update(g, tx.init(g), g);
  CHECK(u.at("a").array().item<float>() == doctest::Approx(-0.6));
  CHECK(st.keys() == std::vector<std::string>{"0", "1"});
}

TEST_CASE("schedules follow optax's formulas") {
  auto lin = optax::linear_schedule(1.0, 0.0, 10, 5);
  CHECK(lin(0) == 1.0);
  CHECK(lin(10) == doctest::Approx(0.5));
  CHECK(lin(100) == 0.0);
  auto cos = optax::cosine_decay_schedule(2.0, 100, 0.1);
  CHECK(cos(0) == doctest::Approx(2.0));
  CHECK(cos(50) == doctest::Approx(2.0 * (0.9 * 0.5 + 0.1)));
  CHECK(cos(1000) == doctest::Approx(0.2));
  auto wc = optax::warmup_cosine_decay_schedule(0.0, 1.0, 10, 110, 0.1);
  CHECK(wc(5) == doctest::Approx(0.5));
  CHECK(wc(10) == doctest::Approx(1.0));
  CHECK(wc(60) == doctest::Approx(0.9 * 0.5 * (1 + std::cos(std::numbers::pi * 0.5)) + 0.1));
  CHECK(wc(110) == doctest::Approx(0.1));
  // A scheduled learning rate keeps its own count in the state.
  auto tx = optax::sgd(optax::linear_schedule(1.0, 0.0, 2));
  Tree p = P({1.f});
  auto st = tx.init(p);
  auto [u0, st1] = tx.update(P({1.f}), st, p);
  auto [u1, st2] = tx.update(P({1.f}), st1, p);
  CHECK(W(u0)[0] == -1.f);
  CHECK(W(u1)[0] == -0.5f);
  CHECK(st2["0"]["count"].array().item<int32_t>() == 2);
  CHECK_THROWS_WITH_AS(
      optax::warmup_cosine_decay_schedule(0, 1, 10, 10),
      "warmup_cosine_decay_schedule: decay_steps (10) must exceed warmup_steps (10)",
      std::invalid_argument);
}

TEST_CASE("scale_by_adam's one-pass kernel gives the bits of the jnp formula, keeping key order") {
  // Leaves inserted as z, a (not sorted) with 70000 elements each, so the kernel runs in parallel.
  Array g_z = random::normal(random::PRNGKey(1), {70000}),
        g_a = random::normal(random::PRNGKey(2), {7, 3});
  Tree params{{"z", jnp::zeros({70000})}, {"a", jnp::zeros({7, 3})}};
  Tree grads{{"z", g_z}, {"a", g_a}};
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, one_b1 = static_cast<float>(1 - 0.9),
              one_b2 = static_cast<float>(1 - 0.999);
  auto tx = optax::scale_by_adam(0.9, 0.999, 1e-8);
  Tree st = tx.init(params);
  Array mu_z = jnp::zeros({70000}), nu_z = jnp::zeros({70000});
  for (int count = 1; count <= 3; ++count) {
    auto [u, ns] = tx.update(grads, st);
    st = ns;
    CHECK(u.keys() == std::vector<std::string>{"z", "a"});
    CHECK(st["mu"].keys() == std::vector<std::string>{"z", "a"});
    mu_z = one_b1 * g_z + b1 * mu_z;
    nu_z = one_b2 * (g_z * g_z) + b2 * nu_z;
    float c1 = 1.f - std::pow(b1, static_cast<float>(count)),
          c2 = 1.f - std::pow(b2, static_cast<float>(count));
    Array want = (mu_z / c1) / (jnp::sqrt(nu_z / c2 + 0.f) + eps);
    CHECK(st["mu"]["z"].array().to_float() == mu_z.to_float());
    CHECK(st["nu"]["z"].array().to_float() == nu_z.to_float());
    CHECK(u["z"].array().to_float() == want.to_float());
    CHECK(st["count"].array().item<int32_t>() == count);
  }
  // A state that does not match the updates fails with map's message, naming the op and the path.
  Tree bad{{"mu", Tree{{"z", jnp::zeros({70000})}}}, {"nu", st["nu"]}, {"count", st["count"]}};
  CHECK_THROWS_WITH_AS(tx.update(grads, bad),
                       doctest::Contains("scale_by_adam: tree structures differ"),
                       std::invalid_argument);
}
