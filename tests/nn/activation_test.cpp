// Activations (jax.nn names) against their closed forms evaluated in double: values, first
// derivatives (and the second for sigmoid), JAX's conventions at kinks, and the delegations of
// softmax / log_softmax / tanh to core.
#include "nn/activation.hpp"

#include <cmath>
#include <numbers>

#include <doctest/doctest.h>

#include "core/autodiff.hpp"
#include "core/ops.hpp"

using namespace flaxpp;

namespace {

const double kSqrt2OverPi = std::sqrt(2.0 / std::numbers::pi);

// Grid from -6 to 6 in steps of 0.25, plus points near 0.
Array grid() {
  std::vector<float> v;
  for (int i = -24; i <= 24; ++i) v.push_back(0.25f * static_cast<float>(i));
  for (float e : {1e-3f, -1e-3f, 1e-6f, -1e-6f}) v.push_back(e);
  return Array::from({static_cast<int64_t>(v.size())}, v);
}

// Float32 evaluation: each output carries a few ulps (<= ~5e-7 relative) plus, where the closed
// form cancels (1 + tanh(u) for u << 0, 1 - s for s ~ 1), up to ~1 ulp of 1 (6e-8) times the
// outer factor |x| <= 6. So |got - want| <= 2e-6 (1 + |want|) has a 3x margin everywhere.
void check_against(const Array& got, const Array& x, double (*want)(double), double tol = 2e-6) {
  auto g = got.to_double(), xs = x.to_double();
  REQUIRE(g.size() == xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    double w = want(xs[i]);
    CHECK_MESSAGE(std::fabs(g[i] - w) <= tol * (1 + std::fabs(w)), "x = ", xs[i], ": ", g[i],
                  " vs ", w);
  }
}

// Elementwise derivative via grad of the sum.
Array derivative(Array (*f)(const Array&), const Array& x) {
  return grad([f](const Array& v) { return jnp::sum(f(v)); })(x);
}

double phi(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2 * std::numbers::pi); }
double Phi(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }

double gelu_tanh(double x) {
  return 0.5 * x * (1 + std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x)));
}
double gelu_tanh_d(double x) {
  double t = std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * kSqrt2OverPi * (1 + 3 * 0.044715 * x * x);
}
double gelu_exact(double x) { return x * Phi(x); }
double gelu_exact_d(double x) { return Phi(x) + x * phi(x); }
double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
double sigmoid_d(double x) { return sigmoid(x) * (1 - sigmoid(x)); }
double sigmoid_dd(double x) { return sigmoid_d(x) * (1 - 2 * sigmoid(x)); }
double silu(double x) { return x * sigmoid(x); }
double silu_d(double x) { return sigmoid(x) + x * sigmoid_d(x); }

Array gelu_exact_f(const Array& x) { return nn::gelu(x, false); }
Array gelu_tanh_f(const Array& x) { return nn::gelu(x); }

}  // namespace

TEST_CASE("gelu: tanh approximation by default (jax.nn.gelu, approximate=True), exact with false") {
  Array x = grid();
  check_against(nn::gelu(x), x, gelu_tanh);
  check_against(nn::gelu(x, false), x, gelu_exact);
  // The two forms differ visibly: at 1, 0.8411920 (tanh) vs 0.8413447 (erf).
  Array one = Array::vector({1.f});
  CHECK(std::fabs(nn::gelu(one).item<double>() - 0.84119199) < 1e-6);
  CHECK(std::fabs(nn::gelu(one, false).item<double>() - 0.84134475) < 1e-6);
  CHECK(nn::gelu(Array::vector({0.f})).item<float>() == 0.f);
}

TEST_CASE("gelu derivatives match the closed forms") {
  Array x = grid();
  check_against(derivative(gelu_tanh_f, x), x, gelu_tanh_d);
  check_against(derivative(gelu_exact_f, x), x, gelu_exact_d);
}

TEST_CASE("relu values and gradient, with relu'(0) = 0 as jax.nn.relu") {
  Array x = Array::vector({-2.f, -1e-30f, -0.f, 0.f, 1e-30f, 3.f});
  CHECK(nn::relu(x).to_float() == std::vector<float>{0, 0, 0, 0, 1e-30f, 3});
  CHECK(derivative(nn::relu, x).to_float() == std::vector<float>{0, 0, 0, 0, 1, 1});
}

TEST_CASE("sigmoid: values, first and second derivatives, finite gradients far in the tails") {
  Array x = grid();
  check_against(nn::sigmoid(x), x, sigmoid);
  check_against(derivative(nn::sigmoid, x), x, sigmoid_d);
  Array second = grad([](const Array& v) {
    return jnp::sum(grad([](const Array& u) { return jnp::sum(nn::sigmoid(u)); })(v));
  })(x);
  check_against(second, x, sigmoid_dd);
  // jax.nn.sigmoid is lax.logistic, whose derivative is s (1 - s): 0, never NaN, once exp(-x)
  // overflows float32 (x < -88.7).
  Array tails = Array::vector({-1000.f, -100.f, -89.f, 89.f, 100.f, 1000.f});
  CHECK(nn::sigmoid(tails).to_float() == std::vector<float>{0, 0, 0, 1, 1, 1});
  for (double g : derivative(nn::sigmoid, tails).to_double()) CHECK(g == 0.0);
}

TEST_CASE("silu (= swish) is x * sigmoid(x); its gradient matches the closed form") {
  Array x = grid();
  check_against(nn::silu(x), x, silu);
  check_against(derivative(nn::silu, x), x, silu_d);
  CHECK(nn::swish(x).to_float() == nn::silu(x).to_float());
  Array tails = Array::vector({-1000.f, -100.f, 100.f});
  auto g = derivative(nn::silu, tails).to_double();
  CHECK(g == std::vector<double>{0, 0, 1});
}

TEST_CASE("softmax, log_softmax and tanh delegate to core (last axis by default)") {
  Array x = Array::from({2, 3}, std::vector<float>{1, 2, 3, -1, 0.5f, 1000});
  CHECK(nn::softmax(x).to_float() == jnp::softmax(x, -1).to_float());
  CHECK(nn::softmax(x, 0).to_float() == jnp::softmax(x, 0).to_float());
  CHECK(nn::log_softmax(x).to_float() == jnp::log_softmax(x, -1).to_float());
  CHECK(nn::log_softmax(x, 0).to_float() == jnp::log_softmax(x, 0).to_float());
  CHECK(nn::tanh(x).to_float() == jnp::tanh(x).to_float());
  // Values in double: exp(x - max) / sum, stable for the 1000 entry.
  auto xs = x.to_double();
  std::vector<double> sm, lsm;
  for (int r = 0; r < 2; ++r) {
    double m = std::max({xs[r * 3], xs[r * 3 + 1], xs[r * 3 + 2]}), z = 0;
    for (int j = 0; j < 3; ++j) z += std::exp(xs[r * 3 + j] - m);
    for (int j = 0; j < 3; ++j) {
      sm.push_back(std::exp(xs[r * 3 + j] - m) / z);
      lsm.push_back(xs[r * 3 + j] - m - std::log(z));
    }
  }
  auto s = nn::softmax(x).to_double(), l = nn::log_softmax(x).to_double();
  for (size_t i = 0; i < 6; ++i) {
    CHECK(std::fabs(s[i] - sm[i]) <= 1e-6);
    CHECK(std::fabs(l[i] - lsm[i]) <= 2e-6 * (1 + std::fabs(lsm[i])));
  }
  // d/dx sum(w * softmax(x)) = s * (w - sum(w * s)) for one row.
  Array row = Array::vector({0.5f, -1.f, 2.f}), w = Array::vector({1.f, 2.f, -3.f});
  Array g = grad([&](const Array& v) { return jnp::sum(w * nn::softmax(v)); })(row);
  auto sr = nn::softmax(row).to_double(), ws = w.to_double(), gs = g.to_double();
  double ws_dot = ws[0] * sr[0] + ws[1] * sr[1] + ws[2] * sr[2];
  for (int i = 0; i < 3; ++i) CHECK(std::fabs(gs[i] - sr[i] * (ws[i] - ws_dot)) <= 1e-6);
}
