// lax::scan and lax::fori_loop: values, gradients against the hand-unrolled loop.
#include "core/lax.hpp"

#include <cmath>

#include <doctest/doctest.h>

#include "core/autodiff.hpp"

using namespace flaxpp;

TEST_CASE("scan: final carry and stacked outputs; gradients equal the unrolled loop's") {
  Array xs = Array::matrix({{1, 2}, {3, 4}, {5, 6}});
  auto step = [](const Array& c, const Array& x) { return std::pair{c + x, (c + x) * 2.f}; };
  auto [total, ys] = lax::scan(step, jnp::zeros({2}), xs);
  CHECK(total.to_float() == std::vector<float>{9.f, 12.f});
  CHECK(ys.shape() == Shape{3, 2});
  CHECK(ys.to_float() == std::vector<float>{2, 4, 8, 12, 18, 24});
  // A recurrence h <- tanh(w * h + x): scan's gradient is the unrolled loop's, bit for bit.
  auto rnn = [&](const Array& w) {
    auto [h, hs] = lax::scan(
        [&](const Array& h, const Array& x) {
          Array n = jnp::tanh(w * h + x);
          return std::pair{n, n};
        },
        jnp::zeros({2}), xs * 0.1f);
    return jnp::sum(hs) + jnp::sum(h);
  };
  auto unrolled = [&](const Array& w) {
    Array h = jnp::zeros({2}), s(0.f);
    for (int64_t i = 0; i < 3; ++i) {
      h = jnp::tanh(w * h + jnp::index(xs * 0.1f, i));
      s = s + jnp::sum(h);
    }
    return s + jnp::sum(h);
  };
  Array w = Array::vector({0.5f, -0.3f});
  CHECK(grad(rnn)(w).to_float() == grad(unrolled)(w).to_float());
  CHECK_THROWS_WITH_AS(lax::scan(step, Array(0.f), Array(1.f)),
                       "lax::scan: xs must have a leading axis, got shape ()",
                       std::invalid_argument);
}

TEST_CASE("fori_loop runs body(i, value) for i in [lower, upper)") {
  Array p = lax::fori_loop(
      0, 3, [](int64_t, const Array& c) { return c * 2.f; }, Array(1.f));
  CHECK(p.item<float>() == 8.f);
  Array s = lax::fori_loop(
      2, 5, [](int64_t i, const Array& c) { return c + static_cast<float>(i); }, Array(0.f));
  CHECK(s.item<float>() == 9.f);
  auto d = grad([](const Array& x) {
    return lax::fori_loop(
        0, 3, [](int64_t, const Array& c) { return c * c; }, x);
  })(Array(1.5f));  // x^8 -> 8 x^7
  CHECK(d.item<float>() == doctest::Approx(8 * std::pow(1.5, 7)));
}
