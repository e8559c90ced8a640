// optax's wrappers (optax/wrappers.hpp): masked, apply_if_finite, inject_hyperparams and
// MultiSteps over 10 steps against their rules (tolerance: tests/optax/reference.hpp), their
// state layouts and checkpoint round trips; MultiSteps against one big batch, measured.
#include <cmath>
#include <limits>

#include <doctest/doctest.h>

#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "reference.hpp"

using namespace flaxpp;
using namespace optax_test;

namespace {
Tree params2() {
  return Tree{{"kernel", vec_array({2, 2}, {0.5, -0.3, 0.2, 0.1})},
              {"bias", vec_array({2}, {0.05, -0.1})}};
}
bool is_kernel(const std::string& path) { return path.ends_with("kernel"); }
}  // namespace

TEST_CASE("masked: inner runs on the masked-in leaves only, {} in its state for the others") {
  Tree p = params2();
  auto plain = run_updates(optax::adam(1e-2), p);
  for (int form = 0; form < 3; ++form) {
    optax::GradientTransformation tx =
        form == 0   ? optax::masked(optax::adam(1e-2), is_kernel)
        : form == 1 ? optax::masked(optax::adam(1e-2),
                                    Tree{{"kernel", Array(true)}, {"bias", Array(false)}})
                    : optax::masked(optax::adam(1e-2),  // any key order
                                    Tree{{"bias", Array(false)}, {"kernel", Array(true)}});
    Tree st;
    auto got = run_updates(tx, p, &st);
    for (int t = 0; t < kSteps; ++t) {
      // Masked-in: adam's own update (the masked-out leaf cannot change it: adam is per leaf).
      CHECK(got[t].at("kernel").array().to_float() == plain[t].at("kernel").array().to_float());
      // Masked-out: the gradient itself, passed through.
      CHECK(got[t].at("bias").array().to_float() == grads_like(p, t).at("bias").array().to_float());
    }
    CHECK(st.keys() == std::vector<std::string>{"inner_state"});
    const Tree& adam_state = st["inner_state"]["0"];
    CHECK(adam_state["mu"]["bias"].is_dict());
    CHECK(adam_state["mu"]["bias"].empty());
    CHECK(adam_state["mu"]["kernel"].array().shape() == Shape{2, 2});
    check_checkpoint_round_trip(tx, p, "masked" + std::to_string(form));
  }
  // A mask tree that is a prefix: one flag for a whole subtree.
  Tree nested{{"Dense_0", params2()}, {"Dense_1", params2()}};
  auto tx =
      optax::masked(optax::scale(0.f), Tree{{"Dense_0", Array(true)}, {"Dense_1", Array(false)}});
  auto [u, s] = tx.update(nested, tx.init(nested), nested);
  CHECK(u.at("Dense_0/kernel").array().to_float() == std::vector<float>(4, 0.f));
  CHECK(u.at("Dense_1/kernel").array().to_float() ==
        nested.at("Dense_1/kernel").array().to_float());
  auto bad = optax::masked(optax::scale(0.f), Tree{{"Dense_0", Array(true)}});
  CHECK_THROWS_WITH_AS(
      bad.init(nested),
      "masked: the mask has no entry for Dense_1/kernel (no key 'Dense_1' at the root)",
      std::invalid_argument);
}

TEST_CASE("apply_if_finite: skips up to max_consecutive_errors non-finite updates") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tree p = params2();
  auto tx = optax::apply_if_finite(optax::sgd(0.1, 0.9), 2);
  auto ref = optax::sgd(0.1, 0.9);
  Tree st = tx.init(p), rs = ref.init(p);
  CHECK(st.keys() == std::vector<std::string>{"notfinite_count", "last_finite", "total_notfinite",
                                              "inner_state"});
  // Steps 3 and 4 carry a NaN (skipped: zeros, inner state kept); steps 6, 7, 8 too: the third
  // in a row exceeds max_consecutive_errors = 2 and is applied.
  std::vector<int> notfinite_count, total;
  for (int t = 0; t < kSteps; ++t) {
    Tree g = grads_like(p, t);
    bool bad = t == 3 || t == 4 || t == 6 || t == 7 || t == 8;
    if (bad) g = g.set("bias", Tree(vec_array({2}, {0.0, nan})));
    auto [u, s] = tx.update(g, st, p);
    st = s;
    bool applied = !bad || t == 8;
    if (applied) {
      auto [ru, r] = ref.update(g, rs, p);
      rs = r;
      CHECK(tree_equal(u, ru));
    } else {
      CHECK(u.at("kernel").array().to_float() == std::vector<float>(4, 0.f));
      CHECK(u.at("bias").array().to_float() == std::vector<float>(2, 0.f));
    }
    CHECK(tree_equal(st["inner_state"], rs));
    CHECK(st["last_finite"].array().item<bool>() == !bad);
    notfinite_count.push_back(st["notfinite_count"].array().item<int32_t>());
    total.push_back(st["total_notfinite"].array().item<int32_t>());
  }
  CHECK(notfinite_count == std::vector<int>{0, 0, 0, 1, 2, 0, 1, 2, 3, 0});
  CHECK(total == std::vector<int>{0, 0, 0, 1, 2, 2, 3, 4, 5, 5});
  check_checkpoint_round_trip(tx, p, "apply_if_finite");
}

TEST_CASE("inject_hyperparams: the learning rate in the state, visible and changeable") {
  Tree p = params2();
  auto factory = [](const optax::Hyperparams& h) {
    return optax::adam(h.at("learning_rate"), h.at("b1"));
  };
  auto tx = optax::inject_hyperparams(factory, {{"learning_rate", 1e-2}, {"b1", 0.9}});
  Tree st = tx.init(p);
  CHECK(st.keys() ==
        std::vector<std::string>{"count", "hyperparams", "hyperparams_states", "inner_state"});
  CHECK(st["hyperparams"].keys() == std::vector<std::string>{"learning_rate", "b1"});
  CHECK(st["hyperparams"]["learning_rate"].array().item<float>() == 1e-2f);
  CHECK(st["hyperparams_states"].empty());
  // Unchanged, it is adam(0.01, b1) bit for bit, with b1 the float32 0.9 (optax passes the
  // float32 values to the factory).
  const double b1 = static_cast<float>(0.9);
  auto plain = run_updates(optax::adam(1e-2, b1), p);
  CHECK(tree_equal(run_updates(tx, p)[9], plain[9]));
  // Changed after 5 steps: steps 6..10 are adam's direction times the new rate, the moments kept.
  Tree adam_st = optax::scale_by_adam(b1).init(p);
  Tree params = p;
  for (int t = 0; t < kSteps; ++t) {
    if (t == 5) {
      st = optax::set_hyperparam(st, "learning_rate", 1e-3);
      CHECK(optax::get_hyperparam(st, "learning_rate") == doctest::Approx(1e-3));
    }
    Tree g = grads_like(params, t);
    auto [u, s] = tx.update(g, st, params);
    auto [dir, as] = optax::scale_by_adam(b1).update(g, adam_st, params);
    st = s, adam_st = as;
    float lr = t < 5 ? 1e-2f : 1e-3f;
    CHECK(u.at("kernel").array().to_float() == (dir.at("kernel").array() * -lr).to_float());
    params = optax::apply_updates(params, u);
  }
  CHECK(st["count"].array().item<int32_t>() == 10);
  CHECK_THROWS_WITH_AS(optax::set_hyperparam(st, "lr", 1.0),
                       "set_hyperparam: the state has no hyper-parameter 'lr'",
                       std::invalid_argument);
  check_checkpoint_round_trip(tx, p, "inject_hyperparams");
  // A scheduled one: evaluated at its own count, which the state keeps.
  auto sched = optax::inject_hyperparams(
      [](const optax::Hyperparams& h) { return optax::sgd(h.at("learning_rate")); },
      {{"learning_rate", optax::exponential_decay(1.0, 1, 0.5)}});
  Tree ss = sched.init(p);
  for (int t = 0; t < 3; ++t) {
    auto [u, s] = sched.update(grads_like(p, t), ss, p);
    CHECK(s["hyperparams"]["learning_rate"].array().item<float>() == std::pow(0.5f, t));
    CHECK(s["hyperparams_states"]["learning_rate"]["count"].array().item<int32_t>() == t + 1);
    ss = s;
  }
}

TEST_CASE("MultiSteps: k calls accumulate the running mean, then one inner step") {
  Tree p = params2();
  const int k = 3;
  auto tx = optax::MultiSteps(optax::adam(1e-2), k).gradient_transformation();
  Tree st = tx.init(p);
  CHECK(st.keys() == std::vector<std::string>{"mini_step", "gradient_step", "inner_opt_state",
                                              "acc_grads", "skip_state"});
  // Reference: adam in double on the mean of each k gradients (acc + (g - acc) / (n + 1) is the
  // running mean), zeros in between.
  const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  Vec m(4, 0), v(4, 0), acc(4, 0);
  int big = 0;
  Tree params = p;
  for (int t = 0; t < kSteps; ++t) {
    Tree g = grads_like(params, t);
    auto [u, s] = tx.update(g, st, params);
    st = s;
    Vec gk = to_vec(g.at("kernel").array()), want(4, 0);
    for (size_t i = 0; i < 4; ++i) acc[i] += (gk[i] - acc[i]) / (t % k + 1);
    if (t % k == k - 1) {
      ++big;
      for (size_t i = 0; i < 4; ++i) {
        m[i] = f32(1 - b1) * acc[i] + f32(b1) * m[i];
        v[i] = f32(1 - b2) * acc[i] * acc[i] + f32(b2) * v[i];
        want[i] =
            -f32(lr) * ((m[i] / bc32(b1, big)) / (std::sqrt(v[i] / bc32(b2, big)) + f32(eps)));
      }
      acc.assign(4, 0);
    }
    check_close(to_vec(u.at("kernel").array()), want, kRel, "MultiSteps step " + std::to_string(t));
    CHECK(optax::MultiSteps::has_updated(st) == (t % k == k - 1));
    CHECK(st["gradient_step"].array().item<int32_t>() == big);
    params = optax::apply_updates(params, u);
  }
  check_checkpoint_round_trip(tx, p, "multisteps");
}

TEST_CASE("MultiSteps: 4 micro-batches of 8 equal one batch of 32 (difference measured)") {
  // Linear regression y = x w + b with a mean squared error: the gradient of the batch mean is the
  // mean of the micro-batch gradients, so the two runs differ only by float32 summation order.
  auto key = random::PRNGKey(3);
  Array x = random::normal(random::fold_in(key, 0), {32, 6});
  Array y = random::normal(random::fold_in(key, 1), {32, 2});
  Tree p0{{"w", random::normal(random::fold_in(key, 2), {6, 2}) * 0.1f}, {"b", jnp::zeros({2})}};
  auto loss = [](const Tree& p, const Array& xb, const Array& yb) {
    Array e = jnp::matmul(xb, p["w"].array()) + p["b"].array() - yb;
    return jnp::mean(e * e);
  };
  auto micro = [&](int i, const Array& a) { return jnp::slice(a, 0, i * 8, i * 8 + 8); };
  auto big_tx = optax::adam(1e-2);
  auto acc_tx = optax::MultiSteps(optax::adam(1e-2), 4).gradient_transformation();
  Tree pb = p0, pa = p0, sb = big_tx.init(p0), sa = acc_tx.init(p0);
  for (int step = 0; step < 20; ++step) {
    Tree g = grad([&](const Tree& p) { return loss(p, x, y); })(pb);
    auto [u, s] = big_tx.update(g, sb, pb);
    pb = optax::apply_updates(pb, u), sb = s;
    for (int i = 0; i < 4; ++i) {
      Tree gi = grad([&](const Tree& p) { return loss(p, micro(i, x), micro(i, y)); })(pa);
      auto [ui, si] = acc_tx.update(gi, sa, pa);
      pa = optax::apply_updates(pa, ui), sa = si;
    }
  }
  double worst = 0;
  for (const char* leaf : {"w", "b"})
    worst = std::max(worst, max_rel(to_vec(pa.at(leaf).array()), to_vec(pb.at(leaf).array())));
  MESSAGE("MultiSteps(adam, 4) on 4 x 8 vs adam on 32, after 20 steps: max relative difference "
          << worst);
  // float32 summation in another order: a few ulps per gradient, carried through 20 Adam steps
  // (whose normalisation by sqrt(v) does not amplify a relative error).
  CHECK(worst < 1e-5);
  CHECK(allclose(pa, pb, 1e-5, 1e-7));
}
