#include "nn/normalization.hpp"

#include "core/ops.hpp"

namespace flaxpp::nn {

Array LayerNorm::operator()(Scope& s, const Array& x) const {
  if (!x.is_float() || x.ndim() == 0)
    s.fail(std::string("expected a float32 input of rank >= 1, got ") + dtype_name(x.dtype()) + " " +
           to_string(x.shape()));
  int64_t d = x.shape().back();
  Array mean = jnp::mean(x, {-1}, true);
  Array mean2 = jnp::mean(x * x, {-1}, true);
  Array var = mean2 - mean * mean;
  if (s.compat() != Compat::v2021) var = jnp::maximum(var, Array(0.f));
  Array mul = jnp::rsqrt(var + static_cast<float>(epsilon));
  if (use_scale) mul = mul * s.param("scale", scale_init, {d});
  Array y = (x - mean) * mul;
  if (use_bias) y = y + s.param("bias", bias_init, {d});
  return y;
}

}  // namespace flaxpp::nn
