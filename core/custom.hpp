// custom_vjp: a function defined together with its own reverse-mode rule (jax.custom_vjp), for
// numerically stable derivatives such as log(1 + exp(x))'s:
//
//   auto softplus = custom_vjp(
//       [](const Array& x) { return jnp::log1p(jnp::exp(x)); },                      // f
//       [](const Array& x) { return std::pair{jnp::log1p(jnp::exp(x)), x}; },        // fwd
//       [](const Array& x, const Array& g) { return std::tuple{g * lax::logistic(x)}; });  // bwd
//   grad(softplus)(Array(100.f)) == 1   (exp's rule alone gives inf / inf = NaN)
//
// fwd(x...) returns {y, residuals}; bwd(residuals, g) returns a std::tuple of one cotangent per
// argument, shaped like it. Outside grad/vjp, f runs. Under vmap the residuals and cotangents
// are batched (bwd is written with jnp primitives); under jvp the rule is transposed (bwd is
// linear in g); grad of grad differentiates bwd (fwd ran on the traced arguments).
#pragma once

#include <memory>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "primitive.hpp"

namespace flaxpp {

namespace custom_detail {

template <class Rule>
struct CustomVjpNode final : autodiff::Node {
  explicit CustomVjpNode(Rule r) : rule(std::move(r)) {}
  std::optional<Rule> rule;
  Grads vjp(const Array& g, const Array&, const Need&) override { return (*rule)(g); }
  void release() override { rule.reset(); }
};

}  // namespace custom_detail

template <class F, class Fwd, class Bwd>
auto custom_vjp(F f, Fwd fwd, Bwd bwd) {
  return [f, fwd, bwd](const auto&... x) -> Array {
    if (!prim::on_tape(x...)) return f(x...);
    auto [y, res] = fwd(x...);
    auto rule = [bwd, res = std::move(res)](const Array& g) {
      return std::apply([](const auto&... c) { return Grads{c...}; }, bwd(res, g));
    };
    auto node = std::make_shared<custom_detail::CustomVjpNode<decltype(rule)>>(std::move(rule));
    node->op = "custom_vjp";
    node->parents = {x.node()...};
    node->shape = y.shape();
    if (y.node()) node->batch = y.node()->batch;  // under vmap the output stays batched
    Array out = y.detached();
    out.set_node(std::move(node));
    return out;
  };
}

}  // namespace flaxpp
