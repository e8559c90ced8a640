// optax's schedules (optax/schedules): each maps the step count to a value, computed in double
// with optax's formulas. Bad arguments throw std::invalid_argument naming the function and value.
//
//   auto lr = optax::warmup_exponential_decay_schedule(0.0, 1e-3, 100, 1000, 0.5);
//   auto tx = optax::adam(lr);            // a schedule is a LearningRate
//   auto s = optax::join_schedules(
//       {optax::constant_schedule(1.0), optax::linear_schedule(1, 0, 10)},
//       {5});  // the second sees count - 5
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "base.hpp"

namespace flaxpp::optax {

Schedule constant_schedule(double value);
// Linear from init_value to end_value over transition_steps, starting at transition_begin.
Schedule linear_schedule(double init_value, double end_value, int64_t transition_steps,
                         int64_t transition_begin = 0);
// (init - end) * (1 - clip(count - begin, 0, steps) / steps)^power + end.
Schedule polynomial_schedule(double init_value, double end_value, double power,
                             int64_t transition_steps, int64_t transition_begin = 0);
// init_value * ((1 - alpha) * 0.5 * (1 + cos(pi * min(count, decay_steps) / decay_steps)) + alpha)
Schedule cosine_decay_schedule(double init_value, int64_t decay_steps, double alpha = 0.0);
// Linear warmup 0..warmup_steps from init_value to peak_value, then cosine decay to end_value
// at decay_steps (total, warmup included).
Schedule warmup_cosine_decay_schedule(double init_value, double peak_value, int64_t warmup_steps,
                                      int64_t decay_steps, double end_value = 0.0);
// init_value * decay_rate^((count - begin) / transition_steps) (floored when staircase), init_value
// before transition_begin, bounded by end_value (a floor when decay_rate < 1, else a ceiling).
Schedule exponential_decay(double init_value, int64_t transition_steps, double decay_rate,
                           int64_t transition_begin = 0, bool staircase = false,
                           std::optional<double> end_value = std::nullopt);
// init_value, multiplied by scale once count >= each boundary (scales must be >= 0).
Schedule piecewise_constant_schedule(double init_value,
                                     const std::map<int64_t, double>& boundaries_and_scales = {});
// schedules[0] before boundaries[0], then schedules[i] of (count - boundaries[i-1]).
Schedule join_schedules(std::vector<Schedule> schedules, std::vector<int64_t> boundaries);
// Linear warmup to peak_value over warmup_steps, then exponential_decay from peak_value.
Schedule warmup_exponential_decay_schedule(double init_value, double peak_value,
                                           int64_t warmup_steps, int64_t transition_steps,
                                           double decay_rate, int64_t transition_begin = 0,
                                           bool staircase = false,
                                           std::optional<double> end_value = std::nullopt);
// Cosine interpolation between init_value * cumulative scales at each boundary; after the last
// boundary the last value.
Schedule piecewise_interpolate_cosine(double init_value,
                                      const std::map<int64_t, double>& boundaries_and_scales);
// One cycle (Smith): cosine from peak/div_factor up to peak at pct_start * transition_steps, then
// down to peak / (div_factor * final_div_factor) at transition_steps.
Schedule cosine_onecycle_schedule(int64_t transition_steps, double peak_value,
                                  double pct_start = 0.3, double div_factor = 25.0,
                                  double final_div_factor = 1e4);

}  // namespace flaxpp::optax
