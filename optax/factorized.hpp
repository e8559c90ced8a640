// optax's factorized second moments (optax/_src/factorized.py), the core of Adafactor.
//
// For a leaf with two dimensions of at least min_dim_size_to_factor (the two largest, d1 < d0
// in size order), the second moment is kept as a row vector (mean over d0) and a column vector
// (mean over d1); other leaves keep a full one. With decay_t = 1 - (t + 1)^-decay_rate
// (t = count - step_offset, before the increment) and s = g^2 + epsilon:
//   v_row = decay_t * v_row + (1 - decay_t) * mean(s, d0), v_col likewise over d1,
//   out = g * (v_row / mean(v_row))^-0.5 (on d0) * v_col^-0.5 (on d1); unfactored
//   v = decay_t * v + (1 - decay_t) * s, out = g * v^-0.5.
// State {"count", "v_row", "v_col", "v"}, each tree shaped like the params with a (1,) zero
// where a leaf does not use that moment. Needs params.
#pragma once

#include <cstdint>

#include "base.hpp"

namespace flaxpp::optax {

GradientTransformation scale_by_factored_rms(bool factored = true, double decay_rate = 0.8,
                                             int64_t step_offset = 0,
                                             int64_t min_dim_size_to_factor = 128,
                                             double epsilon = 1e-30);

}  // namespace flaxpp::optax
