#include "nn/activation.hpp"

#include <cmath>
#include <numbers>

#include "core/autodiff.hpp"
#include "core/ops_fused.hpp"

namespace flaxpp::nn {

Array gelu(const Array& x, bool approximate) {
  // x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) in one pass (core/ops_fused.hpp).
  if (approximate) return fused::gelu_tanh(x);
  return x * (jnp::erf(x / static_cast<float>(std::numbers::sqrt2)) + 1.f) / 2.f;
}

Array relu(const Array& x) { return jnp::where(jnp::greater(x, Array(0.f)), x, Array(0.f)); }

// jax.nn.sigmoid is the primitive lax.logistic, with the fused rule d/dx = s (1 - s). Chaining
// exp's and divide's rules instead gives 0 * inf = NaN once exp(-x) overflows (x < -88.7).
Array sigmoid(const Array& x) {
  Array s = 1.f / (1.f + jnp::exp(-x.detached()));
  if (!autodiff::needs_grad(x)) return s;
  return autodiff::record(
      "logistic", s, {&x},
      [](const Array& g, const Array& out, const std::vector<bool>&) { return std::vector<Array>{g * out * (1.f - out)}; },
      /*keep_output=*/true);
}

Array silu(const Array& x) { return x * sigmoid(x); }

}  // namespace flaxpp::nn
