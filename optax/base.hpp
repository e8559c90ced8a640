// optax's base: a GradientTransformation is a pair of pure functions, init(params) -> state and
// update(updates, state, params) -> {new updates, new state}; states are parameter-style Trees,
// so they checkpoint like params, in the layout of Flax's to_state_dict of the optax state (a
// NamedTuple's fields in order: adam -> {"count", "mu", "nu"}; a tuple -> {"0": ..., "1": ...};
// an EmptyState or a MaskedNode -> {}).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>

#include "../core/tree.hpp"

namespace flaxpp::optax {

// A schedule maps the step count (an int) to a value; computed in double.
using Schedule = std::function<double(int64_t count)>;

// A learning rate (or any scheduled hyper-parameter): a constant or a schedule.
struct LearningRate {
  LearningRate(double v) : value(v) {}                  // NOLINT
  LearningRate(Schedule s) : schedule(std::move(s)) {}  // NOLINT
  template <class F>
  requires std::is_invocable_r_v<double, F, int64_t> LearningRate(F f)
      : schedule(Schedule(std::move(f))) {}  // NOLINT
  double at(int64_t count) const { return schedule ? schedule(count) : value; }
  double value = 0;
  Schedule schedule;
};

struct GradientTransformation {
  std::function<Tree(const Tree& params)> init;
  // `params` may be null for transformations that do not need them.
  std::function<std::pair<Tree, Tree>(const Tree& updates, const Tree& state, const Tree* params)>
      update_fn;

  std::pair<Tree, Tree> update(const Tree& updates, const Tree& state) const {
    return update_fn(updates, state, nullptr);
  }
  std::pair<Tree, Tree> update(const Tree& updates, const Tree& state, const Tree& params) const {
    return update_fn(updates, state, &params);
  }
};

// A predicate on a parameter's '/'-path ("params/Dense_0/bias"): true where a transformation
// applies.
using Mask = std::function<bool(const std::string& path)>;

}  // namespace flaxpp::optax
