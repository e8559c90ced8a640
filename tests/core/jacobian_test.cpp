// jacfwd, jacrev, hessian: against each other, closed forms and finite differences.
#include "core/jacobian.hpp"

#include <cmath>
#include <vector>

#include <doctest/doctest.h>

#include "core/random.hpp"

using namespace flaxpp;

namespace {
// f: R^(2,3) -> R^4 mixing elementwise, reductions and a product.
Array f(const Array& x) {
  static const Array W = random::normal(random::PRNGKey(7), {3, 4});
  return jnp::sum(jnp::tanh(jnp::matmul(x * jnp::exp(x), W)), {0}) + jnp::max(x) * 0.25f;
}
}  // namespace

TEST_CASE("jacfwd == jacrev, shaped out.shape + x.shape, and a closed form") {
  Array x = random::normal(random::PRNGKey(1), {2, 3});
  Array jf = jacfwd(f)(x), jr = jacrev(f)(x);
  CHECK(jf.shape() == Shape{4, 2, 3});
  CHECK(jr.shape() == Shape{4, 2, 3});
  auto a = jf.to_double(), b = jr.to_double();
  for (size_t i = 0; i < a.size(); ++i)  // the same products summed in other orders: 1e-5
    CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-5));
  // Elementwise f: the Jacobian is diagonal, d exp(x)_i / d x_j = exp(x_i) [i == j].
  Array v = Array::vector({0.5f, -1.f, 2.f});
  Array d = jacrev([](const Array& y) { return jnp::exp(y); })(v);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      CHECK(d.to_float()[i * 3 + j] == (i == j ? jnp::exp(v).to_float()[i] : 0.f));
  CHECK(!jf.node());
}

TEST_CASE("hessian matches central differences of the gradient") {
  auto g = [](const Array& x) {
    return jnp::sum(jnp::tanh(x) * x * x) + jnp::sum(x) * jnp::sum(x);
  };
  Array x = Array::vector({0.3f, -0.7f, 1.1f});
  Array H = hessian(g)(x);
  REQUIRE(H.shape() == Shape{3, 3});
  // Closed form: d2/dx_i dx_j = [i == j] (2 tanh + 4 x sech^2 - 2 x^2 tanh sech^2) + 2.
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      double xi = x.to_double()[i], t = std::tanh(xi), s2 = 1 - t * t;
      double want = 2 + (i == j ? 2 * t + 4 * xi * s2 - 2 * xi * xi * t * s2 : 0);
      CHECK(H.to_double()[i * 3 + j] == doctest::Approx(want).epsilon(1e-5));
    }
  // Finite differences of grad (float32, h = 1e-2: 1e-3 relative).
  for (int j = 0; j < 3; ++j) {
    std::vector<float> p = x.to_float(), m = x.to_float();
    p[j] += 1e-2f, m[j] -= 1e-2f;
    auto gp = grad(g)(Array::from({3}, p)).to_double(),
         gm = grad(g)(Array::from({3}, m)).to_double();
    for (int i = 0; i < 3; ++i)
      CHECK(H.to_double()[i * 3 + j] ==
            doctest::Approx((gp[i] - gm[i]) / (double(p[j]) - double(m[j]))).epsilon(1e-3));
  }
}
