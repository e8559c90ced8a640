#include "nn/activation.hpp"

#include <cmath>
#include <numbers>

#include "core/ops.hpp"
#include "core/ops_fused.hpp"

namespace flaxpp::nn {

Array gelu(const Array& x, bool approximate) {
  // x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) in one pass (core/ops_fused.hpp).
  if (approximate) return fused::gelu_tanh(x);
  return x * (jnp::erf(x / static_cast<float>(std::numbers::sqrt2)) + 1.f) / 2.f;
}

Array relu(const Array& x) { return jnp::where(jnp::greater(x, Array(0.f)), x, Array(0.f)); }

// jax.nn.sigmoid is the primitive lax.logistic (its rule lives in core/ops_elementwise.cpp).
Array sigmoid(const Array& x) { return lax::logistic(x); }

Array silu(const Array& x) { return x * sigmoid(x); }

}  // namespace flaxpp::nn
