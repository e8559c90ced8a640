// optax's wrappers: transformations around another transformation (optax/transforms/_masking.py,
// _conditionality.py, _accumulation.py, schedules/_inject.py).
//
//   // weight decay on kernels only, from a function of the path or a tree of bools:
//   auto wd = optax::masked(optax::add_decayed_weights(1e-4),
//                           [](const std::string& path) { return path.ends_with("kernel"); });
//   // skip (up to 5 consecutive) updates with a NaN or an Inf:
//   auto safe = optax::apply_if_finite(optax::adam(1e-3), 5);
//   // the learning rate in the state, readable and changeable between steps:
//   auto tx = optax::inject_hyperparams(
//       [](const optax::Hyperparams& h) { return optax::adam(h.at("learning_rate")); },
//       {{"learning_rate", 1e-3}});
//   state = optax::set_hyperparam(state, "learning_rate", 1e-4);
//   // 4 micro-batches make one step of the mean gradient:
//   auto acc = optax::MultiSteps(optax::adam(1e-3), 4).gradient_transformation();
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base.hpp"

namespace flaxpp::optax {

// Applies `inner` only to the leaves where mask(path) is true; the others pass through unchanged.
// inner sees the updates (and params) with masked-out leaves replaced by an empty dict (optax's
// MaskedNode), so its state has {} there. State {"inner_state"}.
GradientTransformation masked(GradientTransformation inner, Mask mask);
// The same with a tree of bool (or numeric) scalars with the structure of the params or a prefix
// of it ({"Dense_0": true} covers every leaf under Dense_0). A leaf the mask does not reach
// throws std::invalid_argument naming its path.
GradientTransformation masked(GradientTransformation inner, Tree mask);

// Runs `inner` only when every update is finite; otherwise returns zeros and keeps inner's state,
// until more than max_consecutive_errors non-finite updates in a row, which are then applied.
// State {"notfinite_count": int32, "last_finite": bool, "total_notfinite": int32, "inner_state"}.
GradientTransformation apply_if_finite(GradientTransformation inner, int max_consecutive_errors);

// The hyper-parameters inject_hyperparams passes to its factory, by name (float32 values).
using Hyperparams = std::map<std::string, double>;
// Builds `factory(hyperparams)` each step from hyper-parameters kept in the state. A constant is
// read from the state (so set_hyperparam changes it); a schedule is evaluated at its own count.
// State {"count", "hyperparams": {name: float32 scalar} (constants first, then schedules, each in
// the given order), "hyperparams_states": {scheduled name: {"count"}}, "inner_state"}.
GradientTransformation inject_hyperparams(
    std::function<GradientTransformation(const Hyperparams&)> factory,
    std::vector<std::pair<std::string, LearningRate>> hyperparams);
// The state of an inject_hyperparams with hyper-parameter `name` set to `value` (float32); throws
// std::invalid_argument naming the hyper-parameter when the state has no such entry.
Tree set_hyperparam(const Tree& inject_state, const std::string& name, double value);
double get_hyperparam(const Tree& inject_state, const std::string& name);

// Gradient accumulation: every_k(gradient_step) calls make one step of `opt` on their mean
// (use_grad_mean; else their sum); the calls in between return zeros. The running mean is
// acc + (g - acc) / (n + 1), as optax. State {"mini_step": int32, "gradient_step": int32,
// "inner_opt_state", "acc_grads", "skip_state": {}}.
class MultiSteps {
 public:
  MultiSteps(GradientTransformation opt, int64_t every_k_steps, bool use_grad_mean = true);
  MultiSteps(GradientTransformation opt, std::function<int64_t(int64_t)> every_k_schedule,
             bool use_grad_mean = true);
  GradientTransformation gradient_transformation() const;
  // True just after a call that applied the accumulated step.
  static bool has_updated(const Tree& state);

 private:
  GradientTransformation opt_;
  std::function<int64_t(int64_t)> every_k_;
  bool use_grad_mean_;
};

}  // namespace flaxpp::optax
