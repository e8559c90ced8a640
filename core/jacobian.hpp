// Jacobians and Hessians (jax.jacfwd, jax.jacrev, jax.hessian), built from jvp, vjp and vmap:
//
//   Array J = jacfwd(f)(x);   // shape f(x).shape + x.shape: one jvp per input direction, vmapped
//   Array K = jacrev(f)(x);   // the same matrix: one vjp per output direction, vmapped
//   Array H = hessian(g)(x);  // g scalar-valued: jacfwd(jacrev(g)), shape x.shape + x.shape
//
// f maps one Array to one Array. The basis directions are vmapped, so every primitive of f
// needs a batching rule (otherwise "vmap: no batching rule for <prim> yet").
#pragma once

#include "autodiff.hpp"
#include "ops.hpp"
#include "vmap.hpp"

namespace flaxpp {

namespace jacobian_detail {

// The n = numel(shape) unit vectors of `shape`, stacked: (n, shape...).
inline Array basis(const Shape& shape) {
  int64_t n = numel(shape);
  Shape s = shape;
  s.insert(0, n);
  return jnp::reshape(jnp::one_hot(jnp::arange(n), n), s);
}

inline Shape concat(const Shape& a, const Shape& b) {
  Shape r = a;
  for (int64_t d : b) r.push_back(d);
  return r;
}

inline Array finish(const Array& j) { return autodiff::trace_depth() > 0 ? j : j.detached(); }

}  // namespace jacobian_detail

// jacfwd(f)(x)[i..., j...] = d f(x)[i...] / d x[j...] by forward mode.
template <class F>
auto jacfwd(F f) {
  return [f](const Array& x) {
    Array cols = vmap([&](const Array& v) { return jvp(f, x, v).second; })(
        jacobian_detail::basis(x.shape()));  // (numel x, out...)
    Shape out(std::span<const int64_t>(cols.shape().begin() + 1, cols.ndim() - 1));
    Array t = jnp::reshape(cols, {x.size(), numel(out)});
    return jacobian_detail::finish(
        jnp::reshape(jnp::transpose(t), jacobian_detail::concat(out, x.shape())));
  };
}

// jacrev(f)(x), the same Jacobian by reverse mode.
template <class F>
auto jacrev(F f) {
  return [f](const Array& x) {
    auto [y, pullback] = vjp(f, x);
    Array rows = vmap([&, pb = pullback](const Array& u) { return std::get<0>(pb(u)); })(
        jacobian_detail::basis(y.shape()));  // (numel y, x...)
    return jacobian_detail::finish(
        jnp::reshape(rows, jacobian_detail::concat(y.shape(), x.shape())));
  };
}

// hessian(f)(x) for scalar-valued f: forward over reverse, as jax.hessian.
template <class F>
auto hessian(F f) {
  return jacfwd(jacrev(f));
}

}  // namespace flaxpp
