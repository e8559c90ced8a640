#include "nn/losses.hpp"

#include <stdexcept>

#include "core/ops_fused.hpp"

namespace flaxpp::optax {

Array softmax_cross_entropy(const Array& logits, const Array& labels) {
  if (logits.shape() != labels.shape())
    throw std::invalid_argument("softmax_cross_entropy: logits " + to_string(logits.shape()) +
                                " and labels " + to_string(labels.shape()) + " differ");
  return -jnp::sum(labels * jnp::log_softmax(logits, -1), {-1});
}

// logsumexp(logits) - logits[label] per row, in one fused pass (core/ops_fused.hpp).
Array softmax_cross_entropy_with_integer_labels(const Array& logits, const Array& labels) {
  return fused::softmax_cross_entropy_with_integer_labels(logits, labels);
}

Array l2_loss(const Array& predictions, const Array& targets) {
  Array d = predictions - targets;
  return 0.5f * (d * d);
}

Array accuracy(const Array& logits, const Array& labels) {
  return jnp::mean(jnp::astype(jnp::equal(jnp::argmax(logits, -1), labels), DType::float32));
}

}  // namespace flaxpp::optax
