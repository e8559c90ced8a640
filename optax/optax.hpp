// optax in C++: the one header to include. Optimizers in the style of optax: a
// GradientTransformation is a pair of pure functions, init(params) -> state and
// update(updates, state, params) -> {new updates, new state}; states are parameter-style Trees in
// the layout of Flax's to_state_dict of optax's states, so they checkpoint like params.
//
//   auto lr = optax::warmup_cosine_decay_schedule(0, 1e-3, 100, 10000);
//   auto tx = optax::chain({optax::clip_by_global_norm(1.0), optax::adamw(lr)});
//   Tree opt_state = tx.init(params);
//   auto [updates, new_state] = tx.update(grads, opt_state, params);
//   params = optax::apply_updates(params, updates);
//
// Files as optax's modules: base.hpp (GradientTransformation, LearningRate), schedule.hpp,
// transform.hpp (scale_by_* and the other blocks), clipping.hpp, factorized.hpp (Adafactor's
// moments), alias.hpp (sgd, adam, rmsprop, adafactor, lion, ...), wrappers.hpp (masked,
// apply_if_finite, inject_hyperparams, MultiSteps). Losses are in nn/losses.hpp.
//
// The float32 arithmetic follows optax's expressions operation by operation (moments
// (1 - b) * g + b * m, bias correction m / (1 - b^t), m_hat / (sqrt(v_hat + eps_root) + eps)).
#pragma once

#include "alias.hpp"
#include "base.hpp"
#include "clipping.hpp"
#include "factorized.hpp"
#include "schedule.hpp"
#include "transform.hpp"
#include "wrappers.hpp"
