// Fused primitives against their composite definitions: forward values (bit-exact where the
// arithmetic is the same sequence of float32 operations), gradients, second derivatives through
// the composite fallback, determinism, and error messages.
#include "core/ops_fused.hpp"

#include <cmath>

#include <doctest/doctest.h>

#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"

using namespace flaxpp;

namespace {
Array randn(uint32_t seed, const Shape& s, float scale = 1.f) {
  return random::normal(random::PRNGKey(seed), s) * scale;
}
double max_rel(const Array& a, const Array& b) {
  REQUIRE(a.shape() == b.shape());
  double m = 0;
  auto x = a.to_double(), y = b.to_double();
  for (size_t i = 0; i < x.size(); ++i)
    m = std::max(m, std::fabs(x[i] - y[i]) / (1e-6 + std::fabs(y[i])));
  return m;
}
bool bit_equal(const Array& a, const Array& b) {
  return a.shape() == b.shape() && a.to_float() == b.to_float();
}
}  // namespace

TEST_CASE("gelu_tanh, layer_norm and cross-entropy forwards equal the composites bit for bit") {
  Array x = randn(1, {37, 129}, 3.f);  // odd sizes exercise the SIMD tails
  CHECK(bit_equal(fused::gelu_tanh(x), fused::composite::gelu_tanh(x)));
  Array scale = randn(2, {129}), bias = randn(3, {129});
  for (bool clip : {true, false}) {
    CHECK(bit_equal(fused::layer_norm(x, scale, bias, 1e-6f, clip),
                    fused::composite::layer_norm(x, scale, bias, 1e-6f, clip)));
    CHECK(bit_equal(fused::layer_norm(x, std::nullopt, bias, 1e-6f, clip),
                    fused::composite::layer_norm(x, std::nullopt, bias, 1e-6f, clip)));
  }
  Array labels = random::randint(random::PRNGKey(4), {37}, 0, 129);
  CHECK(bit_equal(fused::softmax_cross_entropy_with_integer_labels(x * 100.f, labels),
                  fused::composite::softmax_cross_entropy_with_integer_labels(x * 100.f, labels)));
}

TEST_CASE("dense equals matmul + bias (bit for bit for a small contraction, 1e-6 beyond)") {
  Array x = randn(5, {3, 7, 10}), k = randn(6, {10, 5}), b = randn(7, {5});
  CHECK(bit_equal(fused::dense(x, k, b), fused::composite::dense(x, k, b)));
  CHECK(bit_equal(fused::dense(x, k, std::nullopt), jnp::matmul(x, k)));
  // With a long contraction BLAS adds the bias before its last partial sums: rounding only.
  Array x2 = randn(8, {64, 1024}), k2 = randn(9, {1024, 96}), b2 = randn(10, {96});
  CHECK(max_rel(fused::dense(x2, k2, b2), fused::composite::dense(x2, k2, b2)) < 1e-4);
  CHECK_THROWS_WITH_AS(fused::dense(x, randn(1, {9, 5}), b),
                       "dense: contracting dims differ: (3,7,10) @ (9,5)", std::invalid_argument);
}

TEST_CASE("fused gradients equal the composites' gradients") {
  // The fused backward kernels sum in another order (double accumulators): agreement to 2e-5
  // relative (plus 1e-6 absolute near zero) is float32 rounding, not a formula difference.
  Array x = randn(11, {6, 33}, 2.f), scale = randn(12, {33}), bias = randn(13, {33});
  Array w = randn(14, {6, 33});  // a random linear functional of the output
  auto check = [&](auto f_fused, auto f_comp, const auto&... args) {
    auto gf = grad<0>([&](const auto&... a) { return jnp::sum(f_fused(a...) * w); })(args...);
    auto gc = grad<0>([&](const auto&... a) { return jnp::sum(f_comp(a...) * w); })(args...);
    CHECK(max_rel(gf, gc) < 2e-5);
  };
  check([](const Array& a) { return fused::gelu_tanh(a); },
        [](const Array& a) { return fused::composite::gelu_tanh(a); }, x);
  for (bool clip : {true, false}) {
    auto lf = [clip](const Array& a, const Array& s, const Array& b) {
      return fused::layer_norm(a, s, b, 1e-6f, clip);
    };
    auto lc = [clip](const Array& a, const Array& s, const Array& b) {
      return fused::composite::layer_norm(a, s, b, 1e-6f, clip);
    };
    auto [fx, fs, fb] = grad<0, 1, 2>([&](const Array& a, const Array& s, const Array& b) {
      return jnp::sum(lf(a, s, b) * w);
    })(x, scale, bias);
    auto [cx, cs, cb] = grad<0, 1, 2>([&](const Array& a, const Array& s, const Array& b) {
      return jnp::sum(lc(a, s, b) * w);
    })(x, scale, bias);
    CHECK(max_rel(fx, cx) < 2e-4);  // dx subtracts two row means: larger relative rounding near 0
    CHECK(max_rel(fs, cs) < 2e-5);
    CHECK(max_rel(fb, cb) < 2e-5);
  }
  Array k = randn(15, {33, 8}), b = randn(16, {8}), w8 = randn(17, {6, 8});
  auto [dx, dk, db] = grad<0, 1, 2>([&](const Array& a, const Array& kk, const Array& bb) {
    return jnp::sum(fused::dense(a, kk, bb) * w8);
  })(x, k, b);
  auto [ex, ek, eb] = grad<0, 1, 2>([&](const Array& a, const Array& kk, const Array& bb) {
    return jnp::sum(fused::composite::dense(a, kk, bb) * w8);
  })(x, k, b);
  CHECK(max_rel(dx, ex) < 2e-5);
  CHECK(max_rel(dk, ek) < 2e-5);
  CHECK(max_rel(db, eb) < 2e-5);
  Array labels = random::randint(random::PRNGKey(18), {6}, 0, 33);
  Array wl = randn(19, {6});
  auto cf = grad([&](const Array& z) {
    return jnp::sum(fused::softmax_cross_entropy_with_integer_labels(z, labels) * wl);
  })(x);
  auto cc = grad([&](const Array& z) {
    return jnp::sum(fused::composite::softmax_cross_entropy_with_integer_labels(z, labels) * wl);
  })(x);
  CHECK(max_rel(cf, cc) < 2e-5);
}

TEST_CASE("second derivatives go through the composite definitions") {
  Array x = randn(20, {4, 5});
  auto hv = [&](auto f) {
    Array v = randn(21, {4, 5});
    return grad([&](const Array& a) {
      return jnp::vdot(grad([&](const Array& b) { return jnp::sum(f(b)); })(a), v);
    })(x);
  };
  CHECK(max_rel(hv([](const Array& a) { return fused::gelu_tanh(a); }),
                hv([](const Array& a) { return fused::composite::gelu_tanh(a); })) < 1e-5);
  auto ln = [](const Array& a) {
    return fused::layer_norm(a, std::nullopt, std::nullopt, 1e-6f, true) * a;
  };
  auto lnc = [](const Array& a) {
    return fused::composite::layer_norm(a, std::nullopt, std::nullopt, 1e-6f, true) * a;
  };
  CHECK(max_rel(hv(ln), hv(lnc)) < 1e-4);
}

TEST_CASE("cross-entropy: stable at huge logits, errors name the label") {
  Array z = Array::matrix({{1e4f, 0.f, -1e4f}});
  Array l = fused::softmax_cross_entropy_with_integer_labels(
      z, Array::from({1}, std::vector<int32_t>{1}));
  CHECK(l.item<float>() == doctest::Approx(1e4));
  CHECK_THROWS_WITH_AS(
      fused::softmax_cross_entropy_with_integer_labels(z,
                                                       Array::from({1}, std::vector<int32_t>{3})),
      "softmax_cross_entropy_with_integer_labels: label 3 at flat position 0 is outside [0, 3)",
      std::invalid_argument);
}
