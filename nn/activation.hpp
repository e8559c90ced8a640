// Activations with jax.nn names (plain functions, no parameters).
//
//   nn::gelu(x)                 tanh approximation (Flax's default, used by gMLP):
//                               x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
//   nn::gelu(x, false)          exact: x * (1 + erf(x / sqrt(2))) / 2
//   nn::relu, silu (= swish), sigmoid, tanh, softmax, log_softmax (last axis by default)
#pragma once

#include "../core/ops.hpp"

namespace flaxpp::nn {

Array gelu(const Array& x, bool approximate = true);
Array relu(const Array& x);  // gradient 0 at 0, as jax.nn.relu
Array sigmoid(const Array& x);
Array silu(const Array& x);
inline Array swish(const Array& x) { return silu(x); }
inline Array tanh(const Array& x) { return jnp::tanh(x); }
inline Array softmax(const Array& x, int64_t axis = -1) { return jnp::softmax(x, axis); }
inline Array log_softmax(const Array& x, int64_t axis = -1) { return jnp::log_softmax(x, axis); }

}  // namespace flaxpp::nn
