// optax's schedules (optax/schedule.hpp): each over its first steps against optax's formula
// written here in double. The library also computes in double, so the two agree to the last
// bits; 1e-12 relative leaves room for the different order of a handful of double operations.
#include <cmath>
#include <numbers>

#include <doctest/doctest.h>

#include "optax/optax.hpp"

using namespace flaxpp;

namespace {
constexpr double kRel = 1e-12;
void check_schedule(const optax::Schedule& s, const std::function<double(int64_t)>& want,
                    int64_t steps = 10, const std::string& name = "") {
  for (int64_t t = 0; t < steps; ++t) {
    double got = s(t), w = want(t);
    INFO(name, " at count ", t, ": got ", got, ", want ", w);
    CHECK(std::abs(got - w) <= kRel * std::abs(w));
  }
}
}  // namespace

TEST_CASE("exponential_decay: smooth, staircase, delayed, bounded") {
  check_schedule(
      optax::exponential_decay(0.5, 3, 0.8), [](int64_t t) { return 0.5 * std::pow(0.8, t / 3.0); },
      10, "smooth");
  check_schedule(
      optax::exponential_decay(0.5, 3, 0.8, 0, /*staircase=*/true),
      [](int64_t t) { return 0.5 * std::pow(0.8, std::floor(t / 3.0)); }, 10, "stairs");
  check_schedule(
      optax::exponential_decay(0.5, 3, 0.8, /*transition_begin=*/4),
      [](int64_t t) { return t <= 4 ? 0.5 : 0.5 * std::pow(0.8, (t - 4) / 3.0); }, 10, "delayed");
  check_schedule(
      optax::exponential_decay(0.5, 1, 0.5, 0, false, /*end_value=*/0.1),
      [](int64_t t) { return std::max(0.5 * std::pow(0.5, t), 0.1); }, 10, "floor");
  // A growth rate makes end_value a ceiling.
  CHECK(optax::exponential_decay(1.0, 1, 2.0, 0, false, 5.0)(10) == 5.0);
  // As optax, non-positive transition_steps or a zero rate is the constant init_value.
  CHECK(optax::exponential_decay(0.5, 0, 0.8)(100) == 0.5);
  CHECK(optax::exponential_decay(0.5, 3, 0.0)(100) == 0.5);
}

TEST_CASE("piecewise_constant_schedule: scales multiply from each boundary on") {
  auto s = optax::piecewise_constant_schedule(1.0, {{3, 0.5}, {6, 0.1}});
  check_schedule(s, [](int64_t t) { return t < 3 ? 1.0 : (t < 6 ? 0.5 : 0.05); });
  CHECK(optax::piecewise_constant_schedule(2.0)(7) == 2.0);
  CHECK_THROWS_WITH_AS(optax::piecewise_constant_schedule(1.0, {{3, -1.0}}),
                       "piecewise_constant_schedule: scale -1.000000 at boundary 3 is negative; "
                       "scale factors must be >= 0",
                       std::invalid_argument);
}

TEST_CASE("polynomial_schedule and linear_schedule") {
  check_schedule(optax::polynomial_schedule(1.0, 0.1, 2.0, 6, 2), [](int64_t t) {
    double c = std::clamp<double>(t - 2.0, 0, 6);
    return (1.0 - 0.1) * std::pow(1 - c / 6, 2.0) + 0.1;
  });
  check_schedule(optax::linear_schedule(1.0, 0.0, 8),
                 [](int64_t t) { return 1.0 - std::min<double>(t, 8) / 8; });
  CHECK(optax::polynomial_schedule(3.0, 0.0, 1.0, 0)(5) == 3.0);
}

TEST_CASE("join_schedules hands over with the count restarted at each boundary") {
  auto s =
      optax::join_schedules({optax::constant_schedule(1.0), optax::linear_schedule(2.0, 0.0, 4),
                             optax::constant_schedule(7.0)},
                            {3, 6});
  check_schedule(s, [](int64_t t) { return t < 3 ? 1.0 : (t < 6 ? 2.0 - 0.5 * (t - 3) : 7.0); });
  CHECK_THROWS_WITH_AS(optax::join_schedules({optax::constant_schedule(1.0)}, {3}),
                       "join_schedules: 1 schedules need 0 boundaries, got 1",
                       std::invalid_argument);
}

TEST_CASE("warmup_exponential_decay_schedule") {
  auto s = optax::warmup_exponential_decay_schedule(0.0, 1.0, 4, 2, 0.5, 1, false, 0.2);
  check_schedule(
      s,
      [](int64_t t) {
        if (t < 4) return t / 4.0;
        int64_t c =
            t - 4 - 1;  // exponential_decay's count: after the warmup, minus transition_begin
        return c <= 0 ? 1.0 : std::max(std::pow(0.5, c / 2.0), 0.2);
      },
      12);
}

TEST_CASE("cosine_onecycle_schedule: up to the peak at 30%, down to peak / (25 * 1e4)") {
  const int64_t T = 10;
  const double peak = 0.1, lo = peak / 25, end = lo * 25 * (1.0 / (25 * 1e4));
  auto cosine = [](double a, double b, double pct) {
    return b + (a - b) / 2 * (std::cos(std::numbers::pi * pct) + 1);
  };
  check_schedule(
      optax::cosine_onecycle_schedule(T, peak),
      [&](int64_t t) {
        if (t < 3) return cosine(lo, peak, t / 3.0);
        return cosine(peak, end, (t - 3) / 7.0);
      },
      10);
  CHECK(optax::cosine_onecycle_schedule(T, peak)(10) == doctest::Approx(end).epsilon(kRel));
  CHECK(optax::cosine_onecycle_schedule(T, peak)(50) == doctest::Approx(end).epsilon(kRel));
  CHECK_THROWS_WITH_AS(optax::cosine_onecycle_schedule(0, 1.0),
                       "cosine_onecycle_schedule: transition_steps must be positive, got 0",
                       std::invalid_argument);
}

TEST_CASE("a schedule in scale_by_schedule: state {count}, read before the increment") {
  auto tx = optax::scale_by_schedule(optax::exponential_decay(1.0, 1, 0.5));
  Tree g{{"w", Array::vector({2.f})}};
  Tree st = tx.init(g);
  CHECK(st.keys() == std::vector<std::string>{"count"});
  for (int t = 0; t < 10; ++t) {
    auto [u, s] = tx.update(g, st);
    CHECK(u.at("w").array().item<float>() == static_cast<float>(2 * std::pow(0.5, t)));
    st = s;
  }
  CHECK(st["count"].array().item<int32_t>() == 10);
}
