#include "nn/activation.hpp"

#include <cmath>
#include <numbers>

namespace flaxpp::nn {

Array gelu(const Array& x, bool approximate) {
  if (approximate) {
    const float k = static_cast<float>(std::sqrt(2.0 / std::numbers::pi));
    Array cdf = 0.5f * (1.f + jnp::tanh(k * (x + 0.044715f * (x * x * x))));
    return x * cdf;
  }
  return x * (jnp::erf(x / static_cast<float>(std::numbers::sqrt2)) + 1.f) / 2.f;
}

Array relu(const Array& x) { return jnp::where(jnp::greater(x, Array(0.f)), x, Array(0.f)); }

Array sigmoid(const Array& x) { return 1.f / (1.f + jnp::exp(-x)); }

Array silu(const Array& x) { return x * sigmoid(x); }

}  // namespace flaxpp::nn
