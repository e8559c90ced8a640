// Optimizers in the style of optax: a GradientTransformation is a pair of pure functions,
// init(params) -> state and update(updates, state, params) -> {new updates, new state}; states
// are parameter-style Trees, so they checkpoint like params (same layout as Flax's to_state_dict
// of optax states: adam -> {"count", "mu", "nu"}, chain -> {"0": ..., "1": ...}).
//
//   auto tx = optax::chain({optax::clip_by_global_norm(1.0),
//                           optax::adamw(optax::warmup_cosine_decay_schedule(0, 1e-3, 100, 10000))});
//   Tree opt_state = tx.init(params);
//   auto [updates, new_state] = tx.update(grads, opt_state, params);
//   params = optax::apply_updates(params, updates);
//
// The float32 arithmetic follows optax's expressions operation by operation (moments
// (1 - b) * g + b * m, bias correction m / (1 - b^t), m_hat / (sqrt(v_hat + eps_root) + eps)).
// Schedules take the step count (an int) and return the learning rate.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "../core/tree.hpp"

namespace flaxpp::optax {

using Schedule = std::function<double(int64_t count)>;

// A learning rate: a constant or a schedule.
struct LearningRate {
  LearningRate(double v) : value(v) {}  // NOLINT
  LearningRate(Schedule s) : schedule(std::move(s)) {}  // NOLINT
  template <class F>
    requires std::is_invocable_r_v<double, F, int64_t>
  LearningRate(F f) : schedule(Schedule(std::move(f))) {}  // NOLINT
  double at(int64_t count) const { return schedule ? schedule(count) : value; }
  double value = 0;
  Schedule schedule;
};

struct GradientTransformation {
  std::function<Tree(const Tree& params)> init;
  // `params` may be null for transformations that do not need them.
  std::function<std::pair<Tree, Tree>(const Tree& updates, const Tree& state, const Tree* params)> update_fn;

  std::pair<Tree, Tree> update(const Tree& updates, const Tree& state) const { return update_fn(updates, state, nullptr); }
  std::pair<Tree, Tree> update(const Tree& updates, const Tree& state, const Tree& params) const {
    return update_fn(updates, state, &params);
  }
};

// ---- schedules (optax names and formulas) ----
Schedule constant_schedule(double value);
// Linear from init_value to end_value over transition_steps, starting at transition_begin.
Schedule linear_schedule(double init_value, double end_value, int64_t transition_steps, int64_t transition_begin = 0);
// init_value * ((1 - alpha) * 0.5 * (1 + cos(pi * min(count, decay_steps) / decay_steps)) + alpha)
Schedule cosine_decay_schedule(double init_value, int64_t decay_steps, double alpha = 0.0);
// Linear warmup 0..warmup_steps from init_value to peak_value, then cosine decay to end_value
// at decay_steps (total, warmup included).
Schedule warmup_cosine_decay_schedule(double init_value, double peak_value, int64_t warmup_steps, int64_t decay_steps,
                                      double end_value = 0.0);

// ---- building blocks ----
GradientTransformation scale(double step_size);
GradientTransformation scale_by_learning_rate(LearningRate lr);  // multiplies by -lr(count)
GradientTransformation trace(double decay, bool nesterov = false);
GradientTransformation scale_by_adam(double b1 = 0.9, double b2 = 0.999, double eps = 1e-8, double eps_root = 0.0);
// updates + weight_decay * params, only where mask(path) is true (all leaves without a mask).
using Mask = std::function<bool(const std::string& path)>;
GradientTransformation add_decayed_weights(double weight_decay, Mask mask = nullptr);
GradientTransformation clip_by_global_norm(double max_norm);
GradientTransformation chain(std::vector<GradientTransformation> transforms);

// ---- optimizers ----
GradientTransformation sgd(LearningRate lr, std::optional<double> momentum = std::nullopt, bool nesterov = false);
GradientTransformation adam(LearningRate lr, double b1 = 0.9, double b2 = 0.999, double eps = 1e-8, double eps_root = 0.0);
GradientTransformation adamw(LearningRate lr, double b1 = 0.9, double b2 = 0.999, double eps = 1e-8,
                             double weight_decay = 1e-4, Mask mask = nullptr);

// params + updates, leaf by leaf (structures must match).
Tree apply_updates(const Tree& params, const Tree& updates);
// sqrt(sum of squares of every leaf), a float32 scalar.
Array global_norm(const Tree& tree);

}  // namespace flaxpp::optax
