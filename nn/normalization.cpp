#include "nn/normalization.hpp"

#include "core/ops.hpp"
#include "core/ops_fused.hpp"

namespace flaxpp::nn {

Array LayerNorm::operator()(Scope& s, const Array& x) const {
  if (!x.is_float() || x.ndim() == 0)
    s.fail(std::string("expected a float32 input of rank >= 1, got ") + dtype_name(x.dtype()) + " " +
           to_string(x.shape()));
  int64_t d = x.shape().back();
  std::optional<Array> scale, bias;
  if (use_scale) scale = s.param("scale", scale_init, {d});
  if (use_bias) bias = s.param("bias", bias_init, {d});
  // Flax's formula in one pass (core/ops_fused.hpp): mean = E[x], var = E[x^2] - mean^2, clipped
  // at 0 except under the 2021 profile (Flax 0.3.4), y = (x - mean) * (rsqrt(var + eps) * scale) + bias.
  return fused::layer_norm(x, scale, bias, static_cast<float>(epsilon), s.compat() != Compat::v2021);
}

}  // namespace flaxpp::nn
