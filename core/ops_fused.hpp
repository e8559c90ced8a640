// Fused primitives: the hot composites of a transformer-style model in one pass each, with
// fused backward kernels. Each one equals its composite definition (written below with jnp ops
// and used, through vjp, whenever the backward pass itself is being differentiated), so they
// change speed, not meaning. Why fused: each composite streams its input 5-20 times through
// memory and keeps as many intermediates alive for the backward pass.
//
//   fused::dense(x, kernel, bias)          x (..., in) @ kernel (in, out) + bias (out,)   (bias optional)
//   fused::gelu_tanh(x)                    x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
//   fused::layer_norm(x, scale, bias, eps, clip_variance)
//                                          over the last axis, Flax's formula:
//                                          (x - mean) * (rsqrt(var + eps) * scale) + bias,
//                                          var = E[x^2] - E[x]^2, max(var, 0) if clip_variance
//   fused::softmax_cross_entropy_with_integer_labels(logits (..., C), labels int32 (...))
//                                          logsumexp(logits) - logits[label], per row
// Shape errors throw std::invalid_argument naming the op and the shapes.
#pragma once

#include <optional>

#include "array.hpp"

namespace flaxpp::fused {

Array dense(const Array& x, const Array& kernel, const std::optional<Array>& bias);
Array gelu_tanh(const Array& x);
Array layer_norm(const Array& x, const std::optional<Array>& scale,
                 const std::optional<Array>& bias, float epsilon, bool clip_variance);
Array softmax_cross_entropy_with_integer_labels(const Array& logits, const Array& labels);

// The composite definitions (jnp ops only), for tests and the differentiable backward path.
namespace composite {
Array dense(const Array& x, const Array& kernel, const std::optional<Array>& bias);
Array gelu_tanh(const Array& x);
Array layer_norm(const Array& x, const std::optional<Array>& scale,
                 const std::optional<Array>& bias, float epsilon, bool clip_variance);
Array softmax_cross_entropy_with_integer_labels(const Array& logits, const Array& labels);
}  // namespace composite

}  // namespace flaxpp::fused
