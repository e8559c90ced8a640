#include "nn/stochastic.hpp"

#include "core/ops.hpp"

namespace flaxpp::nn {

Array Dropout::operator()(Scope& s, const Array& x, std::optional<bool> det_arg) const {
  if (deterministic.has_value() == det_arg.has_value())
    s.fail(deterministic ? "deterministic is set both on the module and at the call"
                         : "deterministic must be set on the module or at the call");
  bool det = deterministic ? *deterministic : *det_arg;
  if (rate < 0 || rate > 1) s.fail("rate must be in [0, 1], got " + std::to_string(rate));
  if (det || rate == 0) return x;
  if (rate == 1) return jnp::zeros_like(x);
  float keep = static_cast<float>(1.0 - rate);
  Shape mask_shape = x.shape();
  for (int64_t d : broadcast_dims)
    mask_shape[normalize_axis(d, x.ndim(), "Dropout.broadcast_dims")] = 1;
  Array mask = random::bernoulli(s.make_rng("dropout"), keep, mask_shape);
  return jnp::where(jnp::broadcast_to(mask, x.shape()), x / keep, Array(0.f));
}

}  // namespace flaxpp::nn
