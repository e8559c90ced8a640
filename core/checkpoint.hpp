// checkpoint(f) (jax.checkpoint, "remat"): under grad, f's intermediates are not kept; the
// backward pass runs f again to get them.
//
//   auto block = checkpoint([&](const Array& x) { return jnp::tanh(jnp::matmul(x, w)) * x; });
//   Array g = grad([&](const Array& x) { return jnp::sum(block(block(x))); })(x);
//
// The forward pass records one node per call holding only f's arguments; its rule re-traces f
// with vjp and pulls the cotangent back, so gradients are the same bits as without checkpoint
// (the same kernels run on the same values). f takes and returns Arrays.
#pragma once

#include <memory>
#include <tuple>
#include <utility>

#include "autodiff.hpp"
#include "custom.hpp"
#include "primitive.hpp"

namespace flaxpp {

template <class F>
auto checkpoint(F f) {
  return [f](const auto&... x) -> Array {
    if (!prim::on_tape(x...)) return f(x...);
    Array y;
    {
      autodiff::NoRecord no_intermediates;
      y = f(x...);
    }
    auto rule = [f, xs = std::make_tuple(x...)](const Array& g) {
      autodiff::RecordOn recompute;  // also inside the top-level backward pass
      auto [y2, pullback] = std::apply([&](const auto&... a) { return vjp(f, a...); }, xs);
      return std::apply([](const auto&... c) { return Grads{c...}; }, pullback(g));
    };
    auto node = std::make_shared<custom_detail::CustomVjpNode<decltype(rule)>>(std::move(rule));
    node->op = "checkpoint";
    node->parents = {x.node()...};
    node->shape = y.shape();
    if (y.node()) node->batch = y.node()->batch;
    Array out = y.detached();
    out.set_node(std::move(node));
    return out;
  };
}

}  // namespace flaxpp
