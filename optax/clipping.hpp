// optax's clipping (optax/transforms/_clipping.py). States are {}.
//
//   auto tx = optax::chain({optax::clip(1.0), optax::adam(1e-3)});
#pragma once

#include "base.hpp"

namespace flaxpp::optax {

// Each element into [-max_delta, max_delta].
GradientTransformation clip(double max_delta);
// Each leaf divided by max(1, rms(leaf) / threshold).
GradientTransformation clip_by_block_rms(double threshold);
// Every leaf scaled by max_norm / global_norm when the global norm is max_norm or more.
GradientTransformation clip_by_global_norm(double max_norm);

}  // namespace flaxpp::optax
