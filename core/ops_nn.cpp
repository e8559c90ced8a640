// jax.nn helpers: softmax and log_softmax, numerically stable (shifted by the max, which is
// held constant for differentiation, as JAX's stop_gradient(x_max)).
#include "core/ops.hpp"
#include "core/primitive.hpp"

namespace flaxpp {

// exp(x - max) / sum(exp(x - max)). A fused rule, as jax.nn.softmax's custom_jvp: the vjp
// y * (g - sum(g * y)) needs only the output (one node instead of six, and no exp/sum kept
// alive), and it is exact where the composite would form (sum e)^-2 terms.
Array jnp::softmax(const Array& a, int64_t axis) {
  normalize_axis(axis, a.ndim(), "softmax");
  Array x = a.detached();
  Array m = max(x, {axis}, true);
  Array e = exp(x - m);
  Array out = e / sum(e, {axis}, true);
  if (!autodiff::needs_grad(a)) return out;
  return autodiff::record(
      "softmax", out, {&a},
      [axis](const Array& g, const Array& y, const Need&) {
        return Grads{y * (g - sum(g * y, {axis}, true))};
      },
      autodiff::Keep::output);
}

// x - max - log(sum(exp(x - max))), composed from primitives (as jax.nn.log_softmax); its
// gradient g - softmax(x) * sum(g) follows from the parts.
Array jnp::log_softmax(const Array& a, int64_t axis) {
  normalize_axis(axis, a.ndim(), "log_softmax");
  Array shifted = a - stop_gradient(max(a, {axis}, true));
  return shifted - log(sum(exp(shifted), {axis}, true));
}

}  // namespace flaxpp
