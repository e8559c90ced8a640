// Losses and metrics: closed forms, stability at large logits, finite-difference gradients.
#include "nn/losses.hpp"

#include <cmath>

#include <doctest/doctest.h>

#include "core/autodiff.hpp"

using namespace flaxpp;

TEST_CASE("integer-label cross-entropy: closed form, one-hot agreement, large logits") {
  Array logits = Array::matrix({{1.f, 2.f, 3.f}, {0.f, 0.f, 0.f}});
  Array labels = Array::from({2}, std::vector<int32_t>{0, 2});
  Array l = optax::softmax_cross_entropy_with_integer_labels(logits, labels);
  double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  CHECK(l.data<float>()[0] == doctest::Approx(lse - 1.0).epsilon(1e-6));
  CHECK(l.data<float>()[1] == doctest::Approx(std::log(3.0)).epsilon(1e-6));
  Array onehot = jnp::one_hot(labels, 3);
  Array l2 = optax::softmax_cross_entropy(logits, onehot);
  CHECK(l2.data<float>()[0] == doctest::Approx(l.data<float>()[0]).epsilon(1e-6));
  // Stable for huge logits: log(1 + e^-1e4) ~ 0 and 1e4 when the label is the small one.
  Array big = Array::matrix({{1e4f, 0.f}});
  Array lb = optax::softmax_cross_entropy_with_integer_labels(
      big, Array::from({1}, std::vector<int32_t>{1}));
  CHECK(lb.item<float>() == doctest::Approx(1e4));
  CHECK(std::isfinite(lb.item<float>()));
  CHECK_THROWS_WITH_AS(
      optax::softmax_cross_entropy_with_integer_labels(
          logits, Array::from({2}, std::vector<int32_t>{0, 3})),
      "softmax_cross_entropy_with_integer_labels: label 3 at flat position 1 is outside [0, 3)",
      std::invalid_argument);
}

TEST_CASE("cross-entropy gradient is softmax - onehot, checked by finite differences") {
  Array logits = Array::matrix({{0.3f, -1.2f, 2.0f, 0.1f}});
  Array labels = Array::from({1}, std::vector<int32_t>{1});
  auto f = [&](const Array& z) {
    return jnp::sum(optax::softmax_cross_entropy_with_integer_labels(z, labels));
  };
  Array g = grad(f)(logits);
  std::vector<double> z = {0.3, -1.2, 2.0, 0.1};
  double s = 0;
  for (double v : z) s += std::exp(v);
  for (int i = 0; i < 4; ++i) {
    double want = std::exp(z[i]) / s - (i == 1 ? 1.0 : 0.0);
    CHECK(g.data<float>()[i] == doctest::Approx(want).epsilon(1e-5));
    // Central difference in double around the float32 function (h = 1e-2; the loss is smooth,
    // so the O(h^2) truncation error ~1e-5 is within the 1e-3 bound).
    std::vector<float> zp(z.begin(), z.end()), zm(z.begin(), z.end());
    zp[i] += 1e-2f;
    zm[i] -= 1e-2f;
    double fd =
        (f(Array::from({1, 4}, zp)).item<double>() - f(Array::from({1, 4}, zm)).item<double>()) /
        2e-2;
    CHECK(g.data<float>()[i] == doctest::Approx(fd).epsilon(1e-3));
  }
}

TEST_CASE("l2_loss and accuracy") {
  Array l = optax::l2_loss(Array::vector({1.f, 3.f}), Array::vector({0.f, 1.f}));
  CHECK(l.data<float>()[0] == 0.5f);
  CHECK(l.data<float>()[1] == 2.f);
  Array logits = Array::matrix({{0.f, 1.f}, {2.f, 1.f}, {0.f, 3.f}});
  CHECK(optax::accuracy(logits, Array::from({3}, std::vector<int32_t>{1, 0, 0})).item<float>() ==
        doctest::Approx(2.0 / 3));
}
