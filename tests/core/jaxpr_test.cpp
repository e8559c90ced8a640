// make_jaxpr: the printed IR of small functions, constants and literals, errors.
#include "core/jaxpr.hpp"

#include <doctest/doctest.h>

#include "core/ops.hpp"

using namespace flaxpp;

TEST_CASE("make_jaxpr prints one equation per primitive, typed by its shape rule") {
  auto f = [](const Array& x) { return jnp::exp(x); };
  CHECK(make_jaxpr(f)(jnp::zeros({3})).str() ==
        "{ lambda ; a:f32[3]. let b:f32[3] = exp a in (b) }");
  auto g = [](const Array& x, const Array& w) {
    return jnp::sum(jnp::tanh(jnp::matmul(x, w)) * 2.f, {1});
  };
  CHECK(make_jaxpr(g)(jnp::zeros({2, 3}), jnp::zeros({3, 4})).str() ==
        "{ lambda ; a:f32[2,3] b:f32[3,4]. let c:f32[2,4] = matmul a b d:f32[2,4] = tanh c "
        "e:f32[2,4] = multiply d 2.0 f:f32[2] = sum[axes=(1,)] e in (f) }");
  // Comparisons are bool; reshape prints its parameters.
  auto h = [](const Array& x) {
    return jnp::reshape(jnp::where(jnp::greater(x, Array(0.f)), x, Array(0.f)), {4});
  };
  CHECK(make_jaxpr(h)(jnp::zeros({2, 2})).str() ==
        "{ lambda ; a:f32[2,2]. let b:bool[2,2] = greater a 0.0 c:f32[2,2] = where b a 0.0 "
        "d:f32[4] = reshape[new_sizes=(4,)] c in (d) }");
}

TEST_CASE("make_jaxpr: captured arrays are constants; unsupported ops say so") {
  Array w = jnp::ones({3});
  auto f = [&](const Array& x) { return x + w; };
  CHECK(make_jaxpr(f)(jnp::zeros({3})).str() ==
        "{ lambda a:f32[3] ; b:f32[3]. let c:f32[3] = add b a in (c) }");
  auto g = [](const Array& x) { return jnp::slice(x, 0, 0, 1); };
  CHECK_THROWS_WITH_AS(make_jaxpr(g)(jnp::zeros({3})),
                       "make_jaxpr: slice is not in the primitive table yet",
                       std::invalid_argument);
}
