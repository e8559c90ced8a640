// custom_vjp: the rule replaces the composite's, under grad, grad of grad, jvp and vmap.
#include "core/custom.hpp"

#include <cmath>

#include <doctest/doctest.h>

#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/vmap.hpp"

using namespace flaxpp;

namespace {
auto softplus =
    custom_vjp([](const Array& x) { return jnp::log1p(jnp::exp(x)); },
               [](const Array& x) {
                 return std::pair{jnp::log1p(jnp::exp(x)), x};
               },
               [](const Array& x, const Array& g) { return std::tuple{g * lax::logistic(x)}; });
}  // namespace

TEST_CASE("custom_vjp: its rule is used, where the composite's rule gives NaN") {
  auto naive = [](const Array& x) { return jnp::log1p(jnp::exp(x)); };
  CHECK(std::isnan(grad(naive)(Array(100.f)).item<float>()));  // inf / inf
  CHECK(grad(softplus)(Array(100.f)).item<float>() == 1.f);
  CHECK(grad(softplus)(Array(0.f)).item<float>() == 0.5f);
  CHECK(softplus(Array(0.f)).item<float>() == doctest::Approx(std::log(2.0)));
  // Second derivative: d/dx logistic(x) = s (1 - s) = 1/4 at 0 (grad differentiates bwd).
  auto d1 = grad(softplus);
  CHECK(grad([&](const Array& x) { return d1(x); })(Array(0.f)).item<float>() == 0.25f);
  // Forward mode transposes the rule: the same derivative.
  CHECK(jvp(softplus, Array(100.f), Array(2.f)).second.item<float>() == 2.f);
  // Per-example gradients under vmap.
  Array g = vmap(grad(softplus))(Array::vector({0.f, 100.f, -100.f}));
  CHECK(g.to_float() == std::vector<float>{0.5f, 1.f, 0.f});
}
