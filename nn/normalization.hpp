// LayerNorm, as flax.linen.LayerNorm (over the last axis).
//
//   Array y = s(nn::LayerNorm{}, x);   // params: scale (d,) ones [counter 1], bias (d,) zeros [2]
//
//   mean = E[x], var = E[x^2] - mean^2 (clipped at 0 except under Compat::v2021, as Flax 0.3.4),
//   y = (x - mean) * (rsqrt(var + epsilon) * scale) + bias.
#pragma once

#include "module.hpp"

namespace flaxpp::nn {

struct LayerNorm : Module<LayerNorm> {
  double epsilon = 1e-6;
  bool use_bias = true;
  bool use_scale = true;
  Initializer scale_init = initializers::ones;
  Initializer bias_init = initializers::zeros;

  Array operator()(Scope& s, const Array& x) const;
};

}  // namespace flaxpp::nn
