#include "optax/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace flaxpp::optax {

Schedule constant_schedule(double value) {
  return [value](int64_t) { return value; };
}

Schedule linear_schedule(double init_value, double end_value, int64_t transition_steps,
                         int64_t transition_begin) {
  // optax's polynomial_schedule with power 1, written as (end - init) * frac + init (the form
  // this library has always used, so the learning rates of existing runs keep their bits).
  return [=](int64_t count) {
    if (transition_steps <= 0) return init_value;
    double frac =
        std::clamp(static_cast<double>(count - transition_begin) / transition_steps, 0.0, 1.0);
    return (end_value - init_value) * frac + init_value;
  };
}

Schedule polynomial_schedule(double init_value, double end_value, double power,
                             int64_t transition_steps, int64_t transition_begin) {
  if (transition_steps <= 0) return constant_schedule(init_value);  // as optax (which logs)
  transition_begin = std::max<int64_t>(transition_begin, 0);
  return [=](int64_t count) {
    int64_t c = std::clamp<int64_t>(count - transition_begin, 0, transition_steps);
    double frac = 1 - static_cast<double>(c) / static_cast<double>(transition_steps);
    return (init_value - end_value) * std::pow(frac, power) + end_value;
  };
}

Schedule cosine_decay_schedule(double init_value, int64_t decay_steps, double alpha) {
  if (decay_steps <= 0)
    throw std::invalid_argument("cosine_decay_schedule: decay_steps must be positive");
  return [=](int64_t count) {
    double c = static_cast<double>(std::min(count, decay_steps));
    double cosine = 0.5 * (1 + std::cos(std::numbers::pi * c / decay_steps));
    return init_value * ((1 - alpha) * cosine + alpha);
  };
}

Schedule warmup_cosine_decay_schedule(double init_value, double peak_value, int64_t warmup_steps,
                                      int64_t decay_steps, double end_value) {
  if (decay_steps <= warmup_steps)
    throw std::invalid_argument("warmup_cosine_decay_schedule: decay_steps (" +
                                std::to_string(decay_steps) + ") must exceed warmup_steps (" +
                                std::to_string(warmup_steps) + ")");
  auto warm = linear_schedule(init_value, peak_value, warmup_steps);
  auto decay = cosine_decay_schedule(peak_value, decay_steps - warmup_steps,
                                     peak_value == 0 ? 0 : end_value / peak_value);
  return [=](int64_t count) {
    return count < warmup_steps ? warm(count) : decay(count - warmup_steps);
  };
}

Schedule exponential_decay(double init_value, int64_t transition_steps, double decay_rate,
                           int64_t transition_begin, bool staircase,
                           std::optional<double> end_value) {
  if (transition_steps <= 0 || decay_rate == 0) return constant_schedule(init_value);
  transition_begin = std::max<int64_t>(transition_begin, 0);
  return [=](int64_t count) {
    int64_t decreased = count - transition_begin;
    double p = static_cast<double>(decreased) / static_cast<double>(transition_steps);
    if (staircase) p = std::floor(p);
    double v = decreased <= 0 ? init_value : init_value * std::pow(decay_rate, p);
    if (end_value) v = decay_rate < 1.0 ? std::max(v, *end_value) : std::min(v, *end_value);
    return v;
  };
}

namespace {
void require_nonnegative_scales(const std::map<int64_t, double>& bs, const char* what) {
  for (const auto& [boundary, s] : bs)
    if (!(s >= 0.0))
      throw std::invalid_argument(std::string(what) + ": scale " + std::to_string(s) +
                                  " at boundary " + std::to_string(boundary) +
                                  " is negative; scale factors must be >= 0");
}
}  // namespace

Schedule piecewise_constant_schedule(double init_value,
                                     const std::map<int64_t, double>& boundaries_and_scales) {
  require_nonnegative_scales(boundaries_and_scales, "piecewise_constant_schedule");
  return [=](int64_t count) {
    double v = init_value;
    for (const auto& [boundary, s] : boundaries_and_scales)  // std::map: ascending boundaries
      if (count >= boundary) v *= s;
    return v;
  };
}

Schedule join_schedules(std::vector<Schedule> schedules, std::vector<int64_t> boundaries) {
  if (schedules.empty() || boundaries.size() + 1 != schedules.size())
    throw std::invalid_argument("join_schedules: " + std::to_string(schedules.size()) +
                                " schedules need " +
                                std::to_string(schedules.empty() ? 0 : schedules.size() - 1) +
                                " boundaries, got " + std::to_string(boundaries.size()));
  return [=](int64_t count) {
    double out = schedules[0](count);
    for (size_t i = 0; i < boundaries.size(); ++i)
      if (count >= boundaries[i]) out = schedules[i + 1](count - boundaries[i]);
    return out;
  };
}

Schedule warmup_exponential_decay_schedule(double init_value, double peak_value,
                                           int64_t warmup_steps, int64_t transition_steps,
                                           double decay_rate, int64_t transition_begin,
                                           bool staircase, std::optional<double> end_value) {
  return join_schedules({linear_schedule(init_value, peak_value, warmup_steps),
                         exponential_decay(peak_value, transition_steps, decay_rate,
                                           transition_begin, staircase, end_value)},
                        {warmup_steps});
}

Schedule piecewise_interpolate_cosine(double init_value,
                                      const std::map<int64_t, double>& boundaries_and_scales) {
  require_nonnegative_scales(boundaries_and_scales, "piecewise_interpolate_schedule");
  std::vector<int64_t> bounds{0};
  std::vector<double> values{init_value};
  for (const auto& [boundary, s] : boundaries_and_scales) {
    bounds.push_back(boundary);
    values.push_back(values.back() * s);
  }
  return [=](int64_t count) {
    double out = 0;
    for (size_t i = 0; i + 1 < bounds.size(); ++i) {
      if (!(bounds[i] <= count && count < bounds[i + 1])) continue;
      double size = static_cast<double>(std::max<int64_t>(bounds[i + 1] - bounds[i], 1));
      double pct = static_cast<double>(count - bounds[i]) / size;
      out += values[i + 1] +
             (values[i] - values[i + 1]) / 2.0 * (std::cos(std::numbers::pi * pct) + 1);
    }
    if (bounds.back() <= count) out += values.back();
    return out;
  };
}

Schedule cosine_onecycle_schedule(int64_t transition_steps, double peak_value, double pct_start,
                                  double div_factor, double final_div_factor) {
  if (transition_steps <= 0)
    throw std::invalid_argument(
        "cosine_onecycle_schedule: transition_steps must be positive, got " +
        std::to_string(transition_steps));
  return piecewise_interpolate_cosine(
      peak_value / div_factor,
      {{static_cast<int64_t>(pct_start * static_cast<double>(transition_steps)), div_factor},
       {transition_steps, 1.0 / (div_factor * final_div_factor)}});
}

}  // namespace flaxpp::optax
