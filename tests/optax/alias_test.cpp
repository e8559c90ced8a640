// optax's optimizers (optax/alias.hpp), each over 10 steps against its update rule written out
// below in double (tolerance and the float32 scalars: tests/optax/reference.hpp), its state
// layout (optax's NamedTuple fields in order) and a checkpoint round trip.
#include <cmath>
#include <functional>

#include <doctest/doctest.h>

#include "core/ops.hpp"
#include "reference.hpp"

using namespace flaxpp;
using namespace optax_test;

namespace {

const Vec kP0{-0.5, -0.2, 0.1, 0.4, 0.7};
Tree P() { return Tree{{"w", vec_array({5}, kP0)}}; }

// Runs tx on P() and checks each step's updates of "w" against ref(t, g, p) (t from 1; g the
// gradient, p the params before the step), which returns the update and may keep state.
void check_sequence(const optax::GradientTransformation& tx,
                    const std::function<Vec(int t, const Vec& g, const Vec& p)>& ref,
                    const std::string& name, double rel = kRel) {
  auto got = run_updates(tx, P());
  Vec p = kP0;
  double worst = 0;
  for (int t = 1; t <= kSteps; ++t) {
    Vec want = ref(t, grads_vec(t - 1, 5), p);
    Vec u = to_vec(got[t - 1].at("w").array());
    check_close(u, want, rel, name + " step " + std::to_string(t));
    worst = std::max(worst, max_rel(u, want));
    for (size_t i = 0; i < p.size(); ++i) p[i] += want[i];
  }
  MESSAGE(name << ": worst relative difference from the double rule over 10 steps " << worst);
}

std::vector<std::string> keys(const Tree& t) { return t.keys(); }

}  // namespace

TEST_CASE("rmsprop: plain, centred with momentum, eps outside the root with bias correction") {
  const double lr = 1e-2, d = 0.9, eps = 1e-8;
  {
    Vec nu(5, 0);  // nu = (1 - d) g^2 + d nu;  u = -lr g / sqrt(nu + eps)
    check_sequence(
        optax::rmsprop(lr),
        [&](int, const Vec& g, const Vec&) {
          Vec u(5);
          for (size_t i = 0; i < 5; ++i) {
            nu[i] = f32(1 - d) * g[i] * g[i] + f32(d) * nu[i];
            u[i] = -f32(lr) * (g[i] / std::sqrt(nu[i] + f32(eps)));
          }
          return u;
        },
        "rmsprop");
  }
  {
    // centred: mu = (1 - d) g + d mu; s = g / sqrt(nu - mu^2 + eps); trace = -lr s + 0.9 trace
    Vec mu(5, 0), nu(5, 0), tr(5, 0);
    auto tx = optax::rmsprop(lr, d, eps, 0.0, true, /*centered=*/true, /*momentum=*/0.9);
    check_sequence(
        tx,
        [&](int, const Vec& g, const Vec&) {
          for (size_t i = 0; i < 5; ++i) {
            mu[i] = f32(1 - d) * g[i] + f32(d) * mu[i];
            nu[i] = f32(1 - d) * g[i] * g[i] + f32(d) * nu[i];
            double s = g[i] / std::sqrt(nu[i] - mu[i] * mu[i] + f32(eps));
            tr[i] = -f32(lr) * s + f32(0.9) * tr[i];
          }
          return tr;
        },
        "rmsprop centred + momentum");
    Tree st;
    run_updates(tx, P(), &st);
    CHECK(keys(st) == std::vector<std::string>{"0", "1", "2"});
    CHECK(keys(st["0"]) == std::vector<std::string>{"mu", "nu"});
    CHECK(st["1"].empty());
    CHECK(keys(st["2"]) == std::vector<std::string>{"trace"});
    check_checkpoint_round_trip(tx, P(), "rmsprop");
  }
  {
    // nu_hat = nu / (1 - d^t); u = -lr g / (sqrt(nu_hat) + eps); initial_scale 1 (TF1's)
    Vec nu(5, 1.0);
    auto tx = optax::rmsprop(lr, d, eps, 1.0, /*eps_in_sqrt=*/false, false, std::nullopt, false,
                             /*bias_correction=*/true);
    check_sequence(
        tx,
        [&](int t, const Vec& g, const Vec&) {
          Vec u(5);
          for (size_t i = 0; i < 5; ++i) {
            nu[i] = f32(1 - d) * g[i] * g[i] + f32(d) * nu[i];
            u[i] = -f32(lr) * (g[i] / (std::sqrt(nu[i] / bc32(d, t)) + f32(eps)));
          }
          return u;
        },
        "rmsprop bias-corrected");
    CHECK(keys(tx.init(P())["0"]) == std::vector<std::string>{"count", "nu"});
  }
}

TEST_CASE("adagrad") {
  const double lr = 0.1, eps = 1e-7;
  Vec s(5, 0.1);  // s = s + g^2; u = -lr g / sqrt(s + eps)
  auto tx = optax::adagrad(lr);
  check_sequence(
      tx,
      [&](int, const Vec& g, const Vec&) {
        Vec u(5);
        for (size_t i = 0; i < 5; ++i) {
          s[i] += g[i] * g[i];
          u[i] = -f32(lr) * (g[i] / std::sqrt(s[i] + f32(eps)));
        }
        return u;
      },
      "adagrad");
  CHECK(keys(tx.init(P())["0"]) == std::vector<std::string>{"sum_of_squares"});
  CHECK(tx.init(P())["0"]["sum_of_squares"]["w"].array().to_float() == std::vector<float>(5, 0.1f));
  check_checkpoint_round_trip(tx, P(), "adagrad");
}

TEST_CASE("lion") {
  const double lr = 1e-3, b1 = 0.9, b2 = 0.99, wd = 1e-3;
  Vec m(5, 0);  // u = -lr (sign((1 - b1) g + b1 m) + wd p); m = (1 - b2) g + b2 m
  auto tx = optax::lion(lr, b1, b2, wd);
  check_sequence(
      tx,
      [&](int, const Vec& g, const Vec& p) {
        Vec u(5);
        for (size_t i = 0; i < 5; ++i) {
          double c = f32(1 - b1) * g[i] + f32(b1) * m[i];
          double sign = c > 0 ? 1 : (c < 0 ? -1 : 0);
          u[i] = -f32(lr) * (sign + f32(wd) * p[i]);
          m[i] = f32(1 - b2) * g[i] + f32(b2) * m[i];
        }
        return u;
      },
      "lion");
  CHECK(keys(tx.init(P())["0"]) == std::vector<std::string>{"count", "mu"});
  check_checkpoint_round_trip(tx, P(), "lion");
}

TEST_CASE("adabelief") {
  const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-16, eps_root = 1e-16;
  // m = (1-b1) g + b1 m; v = (1-b2) (g - m)^2 + b2 v + eps_root;
  // u = -lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
  Vec m(5, 0), v(5, 0);
  auto tx = optax::adabelief(lr);
  check_sequence(
      tx,
      [&](int t, const Vec& g, const Vec&) {
        Vec u(5);
        for (size_t i = 0; i < 5; ++i) {
          m[i] = f32(1 - b1) * g[i] + f32(b1) * m[i];
          double e = g[i] - m[i];
          v[i] = f32(1 - b2) * e * e + f32(b2) * v[i] + f32(eps_root);
          u[i] = -f32(lr) * ((m[i] / bc32(b1, t)) / (std::sqrt(v[i] / bc32(b2, t)) + f32(eps)));
        }
        return u;
      },
      "adabelief");
  CHECK(keys(tx.init(P())["0"]) == std::vector<std::string>{"count", "mu", "nu"});
  check_checkpoint_round_trip(tx, P(), "adabelief");
}

TEST_CASE("nadam") {
  const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  // m_hat = b1 m / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t); u = -lr m_hat / (sqrt(v_hat) + eps)
  Vec m(5, 0), v(5, 0);
  auto tx = optax::nadam(lr);
  check_sequence(
      tx,
      [&](int t, const Vec& g, const Vec&) {
        Vec u(5);
        for (size_t i = 0; i < 5; ++i) {
          m[i] = f32(1 - b1) * g[i] + f32(b1) * m[i];
          v[i] = f32(1 - b2) * g[i] * g[i] + f32(b2) * v[i];
          double mh = f32(b1) * (m[i] / bc32(b1, t + 1)) + f32(1 - b1) * (g[i] / bc32(b1, t));
          u[i] = -f32(lr) * (mh / (std::sqrt(v[i] / bc32(b2, t)) + f32(eps)));
        }
        return u;
      },
      "nadam");
  CHECK(keys(tx.init(P())["0"]) == std::vector<std::string>{"count", "mu", "nu"});
  check_checkpoint_round_trip(tx, P(), "nadam");
}

TEST_CASE("radam: m_hat for rho_t < 5 (steps 1-5), the rectified step after") {
  const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  // rho_inf = 2 / (1 - b2) - 1; rho_t = rho_inf - 2 t b2^t / (1 - b2^t);
  // r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t)).
  // rho_t is computed in float32 as optax does: it cancels 1999 - 1993 at t = 6, so float32's
  // rounding moves it by 1e-3 relative (part of optax's result, not an error).
  const double ro_inf = 2.0 / (1.0 - b2) - 1.0;
  Vec m(5, 0), v(5, 0);
  int rectified = 0;
  check_sequence(
      optax::radam(lr),
      [&](int t, const Vec& g, const Vec&) {
        float b2t = std::pow(static_cast<float>(b2), static_cast<float>(t));
        float ro = static_cast<float>(ro_inf) - static_cast<float>(2 * t) * b2t / (1.f - b2t);
        Vec u(5);
        for (size_t i = 0; i < 5; ++i) {
          m[i] = f32(1 - b1) * g[i] + f32(b1) * m[i];
          v[i] = f32(1 - b2) * g[i] * g[i] + f32(b2) * v[i];
          double mh = m[i] / bc32(b1, t);
          if (ro >= 5.f) {
            double r = std::sqrt((ro - 4.0) * (ro - 2.0) * f32(ro_inf) /
                                 (f32((ro_inf - 4) * (ro_inf - 2)) * ro));
            u[i] = -f32(lr) * (r * mh / (std::sqrt(v[i] / bc32(b2, t)) + f32(eps)));
          } else {
            u[i] = -f32(lr) * mh;
          }
        }
        rectified += ro >= 5.f;
        return u;
      },
      "radam");
  CHECK(rectified == 5);
  check_checkpoint_round_trip(optax::radam(lr), P(), "radam");
}

TEST_CASE("lamb: adam + weight decay scaled by each leaf's trust ratio |p| / |u|") {
  const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-6, wd = 1e-2;
  // Two leaves, so the per-leaf norms matter; sorted order: bias (leaf 0), kernel (leaf 1).
  Vec pb{0.1, -0.2, 0.3}, pk{0.5, -0.4, 0.3, -0.2, 0.1, 0.6};
  Tree params{{"kernel", vec_array({2, 3}, pk)}, {"bias", vec_array({3}, pb)}};
  auto tx = optax::lamb(lr, b1, b2, eps, 0.0, wd);
  auto got = run_updates(tx, params);
  std::vector<Vec*> p{&pb, &pk};
  std::vector<Vec> m{Vec(3, 0), Vec(6, 0)}, v{Vec(3, 0), Vec(6, 0)};
  const char* names[] = {"bias", "kernel"};
  for (int t = 1; t <= kSteps; ++t) {
    for (int leaf = 0; leaf < 2; ++leaf) {
      size_t n = p[leaf]->size();
      Vec g = grads_vec(t - 1, n, leaf), a(n);
      double pn = 0, an = 0;
      for (size_t i = 0; i < n; ++i) {
        m[leaf][i] = f32(1 - b1) * g[i] + f32(b1) * m[leaf][i];
        v[leaf][i] = f32(1 - b2) * g[i] * g[i] + f32(b2) * v[leaf][i];
        a[i] = (m[leaf][i] / bc32(b1, t)) / (std::sqrt(v[leaf][i] / bc32(b2, t)) + f32(eps)) +
               f32(wd) * (*p[leaf])[i];
        pn += (*p[leaf])[i] * (*p[leaf])[i];
        an += a[i] * a[i];
      }
      double ratio = std::sqrt(pn) / std::sqrt(an);
      Vec want(n);
      for (size_t i = 0; i < n; ++i) want[i] = -f32(lr) * (a[i] * ratio);
      check_close(to_vec(got[t - 1].at(names[leaf]).array()), want, kRel,
                  std::string("lamb ") + names[leaf] + " step " + std::to_string(t));
      for (size_t i = 0; i < n; ++i) (*p[leaf])[i] += want[i];
    }
  }
  Tree st = tx.init(params);
  CHECK(keys(st) == std::vector<std::string>{"0", "1", "2", "3"});
  CHECK(st["1"].empty());
  CHECK(st["2"].empty());
  check_checkpoint_round_trip(tx, params, "lamb");
}

TEST_CASE("adafactor: factored moments for a matrix, full ones for a vector, optax's chain") {
  // min_dim_size_to_factor = 3 so the (3, 4) kernel is factored (rows over axis 1, columns over
  // axis 0); the (4,) bias is not. With decay_t = 1 - t^-0.8 (t from 1) and s = g^2 + 1e-30:
  //   v_row = decay_t v_row + (1 - decay_t) mean_c s;  v_col = ... mean_r s;
  //   u = g (v_row / mean(v_row))^-1/2 v_col^-1/2;  bias: v = decay_t v + (1 - decay_t) s,
  //   u = g v^-1/2; then u / max(1, rms(u)) (clip_by_block_rms 1), * lr,
  //   * max(rms(p), 1e-3) (scale_by_param_block_rms), * -1.
  const double lr = 1e-2;
  Vec pb{0.1, -0.2, 0.3, -0.4}, pk(12);
  for (size_t i = 0; i < 12; ++i) pk[i] = 0.1 * static_cast<double>(i) - 0.55;
  Tree params{{"kernel", vec_array({3, 4}, pk)}, {"bias", vec_array({4}, pb)}};
  auto tx = optax::adafactor(lr, /*min_dim_size_to_factor=*/3);
  auto got = run_updates(tx, params);
  Vec vr(3, 0), vc(4, 0), vb(4, 0);
  auto finish = [&](Vec u, const Vec& p) {  // clip_by_block_rms, lr, param scale, -1
    double ss = 0, ps = 0;
    for (double x : u) ss += x * x;
    for (double x : p) ps += x * x;
    double denom = std::max(1.0, std::sqrt(ss / static_cast<double>(u.size())));
    double pscale = std::max(std::sqrt(ps / static_cast<double>(p.size())), f32(1e-3));
    for (double& x : u) x = -(x / denom * f32(lr) * pscale);
    return u;
  };
  for (int t = 1; t <= kSteps; ++t) {
    // optax: 1 - (float(count) + 1)^-0.8 in float32
    double d = 1.f - std::pow(static_cast<float>(t), -0.8f);
    Vec gb = grads_vec(t - 1, 4, 0), gk = grads_vec(t - 1, 12, 1), ub(4), uk(12);
    for (size_t i = 0; i < 4; ++i) {
      vb[i] = d * vb[i] + (1 - d) * (gb[i] * gb[i] + f32(1e-30));
      ub[i] = gb[i] * std::pow(vb[i], -0.5);
    }
    for (size_t r = 0; r < 3; ++r) {
      double s = 0;
      for (size_t c = 0; c < 4; ++c) s += gk[r * 4 + c] * gk[r * 4 + c] + f32(1e-30);
      vr[r] = d * vr[r] + (1 - d) * (s / 4);
    }
    for (size_t c = 0; c < 4; ++c) {
      double s = 0;
      for (size_t r = 0; r < 3; ++r) s += gk[r * 4 + c] * gk[r * 4 + c] + f32(1e-30);
      vc[c] = d * vc[c] + (1 - d) * (s / 3);
    }
    double row_mean = (vr[0] + vr[1] + vr[2]) / 3;
    for (size_t r = 0; r < 3; ++r)
      for (size_t c = 0; c < 4; ++c)
        uk[r * 4 + c] = gk[r * 4 + c] * std::pow(vr[r] / row_mean, -0.5) * std::pow(vc[c], -0.5);
    Vec wb = finish(ub, pb), wk = finish(uk, pk);
    check_close(to_vec(got[t - 1].at("bias").array()), wb, kRel,
                "adafactor bias step " + std::to_string(t));
    check_close(to_vec(got[t - 1].at("kernel").array()), wk, kRel,
                "adafactor kernel step " + std::to_string(t));
    for (size_t i = 0; i < 4; ++i) pb[i] += wb[i];
    for (size_t i = 0; i < 12; ++i) pk[i] += wk[i];
  }
  Tree st = tx.init(params);
  CHECK(keys(st) == std::vector<std::string>{"0", "1", "2", "3", "4"});
  CHECK(keys(st["0"]) == std::vector<std::string>{"count", "v_row", "v_col", "v"});
  CHECK(st["0"]["v_row"]["kernel"].array().shape() == Shape{3});
  CHECK(st["0"]["v_col"]["kernel"].array().shape() == Shape{4});
  CHECK(st["0"]["v"]["kernel"].array().shape() == Shape{1});
  CHECK(st["0"]["v_row"]["bias"].array().shape() == Shape{1});
  CHECK(st["0"]["v"]["bias"].array().shape() == Shape{4});
  check_checkpoint_round_trip(tx, params, "adafactor");
  // optax's defaults: nothing below 128 x 128 is factored, no learning rate in the chain.
  Tree d = optax::adafactor().init(params);
  CHECK(keys(d) == std::vector<std::string>{"0", "1", "2", "3"});
  CHECK(d["0"]["v"]["kernel"].array().shape() == Shape{3, 4});
  Tree big{{"k", jnp::zeros({128, 256})}};
  Tree db = optax::adafactor().init(big);
  CHECK(db["0"]["v_row"]["k"].array().shape() == Shape{128});
  CHECK(db["0"]["v_col"]["k"].array().shape() == Shape{256});
}

TEST_CASE("float32 replay: optax's operations in optax's order give the same bits") {
  // The same rules as above replayed in float32, one operation at a time in the order of optax's
  // jnp expressions (rsqrt as 1 / sqrt): the library must match bit for bit, which the 2e-6
  // comparisons with double cannot show.
  using F = std::vector<float>;
  auto f = [](double x) { return static_cast<float>(x); };
  auto bc = [&](double b, int t) { return 1.f - std::pow(f(b), static_cast<float>(t)); };
  auto replay = [&](const optax::GradientTransformation& tx,
                    const std::function<F(int t, const F& g, const F& p)>& rule,
                    const std::string& name) {
    auto got = run_updates(tx, P());
    F p(kP0.begin(), kP0.end());
    for (int t = 1; t <= kSteps; ++t) {
      F g(5);
      for (size_t i = 0; i < 5; ++i) g[i] = grad_value(t - 1, i);
      F want = rule(t, g, p);
      INFO(name, " step ", t);
      CHECK(got[t - 1].at("w").array().to_float() == want);
      for (size_t i = 0; i < 5; ++i) p[i] = p[i] + want[i];
    }
  };
  const float lr = f(-1e-2);  // scale(-lr)
  {
    F mu(5, 0), nu(5, 0), tr(5, 0);
    replay(
        optax::rmsprop(1e-2, 0.9, 1e-8, 0.0, true, true, 0.9),
        [&](int, const F& g, const F&) {
          for (size_t i = 0; i < 5; ++i) {
            mu[i] = f(1 - 0.9) * g[i] + f(0.9) * mu[i];
            nu[i] = f(1 - 0.9) * (g[i] * g[i]) + f(0.9) * nu[i];
            float s = 1.f / std::sqrt((nu[i] - mu[i] * mu[i]) + f(1e-8));
            tr[i] = (s * g[i]) * lr + f(0.9) * tr[i];
          }
          return tr;
        },
        "rmsprop centred + momentum");
  }
  {
    F s(5, f(0.1));
    replay(
        optax::adagrad(1e-2),
        [&](int, const F& g, const F&) {
          F u(5);
          for (size_t i = 0; i < 5; ++i) {
            s[i] = g[i] * g[i] + s[i];
            float inv = s[i] > 0 ? 1.f / std::sqrt(s[i] + f(1e-7)) : 0.f;
            u[i] = (inv * g[i]) * lr;
          }
          return u;
        },
        "adagrad");
  }
  {
    F m(5, 0);
    replay(
        optax::lion(1e-2, 0.9, 0.99, 1e-3),
        [&](int, const F& g, const F& p) {
          F u(5);
          for (size_t i = 0; i < 5; ++i) {
            float c = f(1 - 0.9) * g[i] + f(0.9) * m[i];
            float sign = c > 0 ? 1.f : (c < 0 ? -1.f : 0.f);
            m[i] = f(1 - 0.99) * g[i] + f(0.99) * m[i];
            u[i] = (sign + f(1e-3) * p[i]) * lr;
          }
          return u;
        },
        "lion");
  }
  {
    F m(5, 0), v(5, 0);
    replay(
        optax::adabelief(1e-2),
        [&](int t, const F& g, const F&) {
          F u(5);
          for (size_t i = 0; i < 5; ++i) {
            m[i] = f(1 - 0.9) * g[i] + f(0.9) * m[i];
            float e = g[i] - m[i];
            v[i] = (f(1 - 0.999) * (e * e) + f(0.999) * v[i]) + f(1e-16);
            u[i] = ((m[i] / bc(0.9, t)) / (std::sqrt(v[i] / bc(0.999, t)) + f(1e-16))) * lr;
          }
          return u;
        },
        "adabelief");
  }
  {
    F m(5, 0), v(5, 0);
    replay(
        optax::nadam(1e-2),
        [&](int t, const F& g, const F&) {
          F u(5);
          for (size_t i = 0; i < 5; ++i) {
            m[i] = f(1 - 0.9) * g[i] + f(0.9) * m[i];
            v[i] = f(1 - 0.999) * (g[i] * g[i]) + f(0.999) * v[i];
            float mh = f(0.9) * (m[i] / bc(0.9, t + 1)) + f(1 - 0.9) * (g[i] / bc(0.9, t));
            u[i] = (mh / (std::sqrt(v[i] / bc(0.999, t) + 0.f) + f(1e-8))) * lr;
          }
          return u;
        },
        "nadam");
  }
}
