// Losses and metrics with optax's names and formulas.
//
//   Array l = optax::softmax_cross_entropy_with_integer_labels(logits, labels);  // (...,)
//   Array loss = jnp::mean(l);
//
// - softmax_cross_entropy(logits, labels): -sum(labels * log_softmax(logits), -1)
// - softmax_cross_entropy_with_integer_labels(logits (..., C), labels int32 (...)):
//   logsumexp(logits, -1) - logits[label]; stable for large logits (no exp overflow).
//   Labels outside [0, C) throw naming the label and C.
// - l2_loss(pred, target): 0.5 * (pred - target)^2, elementwise
// - accuracy(logits, labels): mean(argmax(logits, -1) == labels), a float32 scalar
#pragma once

#include "../core/ops.hpp"

namespace flaxpp::optax {

Array softmax_cross_entropy(const Array& logits, const Array& labels);
Array softmax_cross_entropy_with_integer_labels(const Array& logits, const Array& labels);
Array l2_loss(const Array& predictions, const Array& targets);
Array accuracy(const Array& logits, const Array& labels);

}  // namespace flaxpp::optax
