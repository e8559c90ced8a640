#include "nn/losses.hpp"

#include <stdexcept>

namespace flaxpp::optax {

Array softmax_cross_entropy(const Array& logits, const Array& labels) {
  if (logits.shape() != labels.shape())
    throw std::invalid_argument("softmax_cross_entropy: logits " + to_string(logits.shape()) + " and labels " +
                                to_string(labels.shape()) + " differ");
  return -jnp::sum(labels * jnp::log_softmax(logits, -1), {-1});
}

Array softmax_cross_entropy_with_integer_labels(const Array& logits, const Array& labels) {
  if (labels.dtype() != DType::int32)
    throw std::invalid_argument(std::string("softmax_cross_entropy_with_integer_labels: labels must be int32, got ") +
                                dtype_name(labels.dtype()));
  Shape expect(std::span<const int64_t>(logits.shape().begin(), logits.ndim() ? logits.ndim() - 1 : 0));
  if (logits.ndim() == 0 || labels.shape() != expect)
    throw std::invalid_argument("softmax_cross_entropy_with_integer_labels: logits " + to_string(logits.shape()) +
                                " need labels of shape " + to_string(expect) + ", got " + to_string(labels.shape()));
  int64_t C = logits.shape().back();
  const int32_t* p = labels.data<int32_t>();
  for (int64_t i = 0; i < labels.size(); ++i)
    if (p[i] < 0 || p[i] >= C)
      throw std::invalid_argument("softmax_cross_entropy_with_integer_labels: label " + std::to_string(p[i]) +
                                  " at flat position " + std::to_string(i) + " is outside [0, " + std::to_string(C) + ")");
  Array label_logits = jnp::squeeze(jnp::take_along_axis(logits, jnp::expand_dims(labels, -1), -1), {-1});
  return jnp::logsumexp(logits, {-1}) - label_logits;
}

Array l2_loss(const Array& predictions, const Array& targets) {
  Array d = predictions - targets;
  return 0.5f * (d * d);
}

Array accuracy(const Array& logits, const Array& labels) {
  return jnp::mean(jnp::astype(jnp::equal(jnp::argmax(logits, -1), labels), DType::float32));
}

}  // namespace flaxpp::optax
