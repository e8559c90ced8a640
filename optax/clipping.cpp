#include "optax/clipping.hpp"

#include <stdexcept>
#include <string>

#include "core/ops.hpp"
#include "optax/transform.hpp"

namespace flaxpp::optax {

GradientTransformation clip(double max_delta) {
  if (!(max_delta >= 0))
    throw std::invalid_argument("clip: max_delta must be >= 0, got " + std::to_string(max_delta));
  float d = static_cast<float>(max_delta);
  return {[](const Tree&) { return Tree(); },
          [d](const Tree& u, const Tree& state, const Tree*) {
            return std::make_pair(tree_map([d](const Array& g) { return jnp::clip(g, -d, d); }, u),
                                  state);
          }};
}

GradientTransformation clip_by_block_rms(double threshold_d) {
  float threshold = static_cast<float>(threshold_d);
  return {[](const Tree&) { return Tree(); },
          [threshold](const Tree& u, const Tree& state, const Tree*) {
            Tree out = tree_map(
                [threshold](const Array& g) {
                  Array denom = jnp::maximum(Array(1.f), jnp::sqrt(jnp::mean(g * g)) / threshold);
                  return g / denom;
                },
                u);
            return std::make_pair(out, state);
          }};
}

GradientTransformation clip_by_global_norm(double max_norm_d) {
  float max_norm = static_cast<float>(max_norm_d);
  return {[](const Tree&) { return Tree(); },
          [max_norm](const Tree& u, const Tree& state, const Tree*) {
            Array g_norm = global_norm(u);
            Array trigger = jnp::less(g_norm, Array(max_norm));
            Tree out = tree_map(
                [&](const Array& t) { return jnp::where(trigger, t, (t / g_norm) * max_norm); }, u);
            return std::make_pair(out, state);
          }};
}

}  // namespace flaxpp::optax
