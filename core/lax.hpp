// jax.lax's loops: scan and fori_loop.
//
//   auto [total, partial] = lax::scan(
//       [](const Array& c, const Array& x) { return std::pair{c + x, c + x}; }, Array(0.f), xs);
//   // total = sum(xs), partial = cumsum(xs) along axis 0
//   Array p = lax::fori_loop(0, 3, [](int64_t, const Array& c) { return c * 2.f; }, Array(1.f));
//
// scan(f, init, xs): f(carry, x) -> {carry, y} for each x = xs[i] along xs' leading axis;
// returns {final carry, ys stacked on a new leading axis}. The carry may be any differentiable
// structure (an Array, a vector, a tree). Both are loops run eagerly (differentiable through the
// primitives f uses, so scan's gradient is the unrolled loop's); scan is not yet one primitive
// of the table: under vmap and make_jaxpr it stops at slicing, which has no rules there yet
// ("vmap: no batching rule for slice yet").
#pragma once

#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

#include "ops.hpp"

namespace flaxpp::lax {

template <class F, class C>
auto scan(F f, const C& init, const Array& xs) {
  if (xs.ndim() == 0)
    throw std::invalid_argument("lax::scan: xs must have a leading axis, got shape ()");
  if (xs.shape()[0] == 0) throw std::invalid_argument("lax::scan: xs has length 0");
  C carry = init;
  std::vector<Array> ys;
  for (int64_t i = 0; i < xs.shape()[0]; ++i) {
    auto [c, y] = f(carry, jnp::index(xs, i));
    carry = c;
    ys.push_back(y);
  }
  return std::pair<C, Array>{carry, jnp::stack(ys)};
}

// fori_loop(lower, upper, body, init): body(i, value) for i in [lower, upper).
template <class F, class C>
C fori_loop(int64_t lower, int64_t upper, F body, C init) {
  for (int64_t i = lower; i < upper; ++i) init = body(i, init);
  return init;
}

}  // namespace flaxpp::lax
