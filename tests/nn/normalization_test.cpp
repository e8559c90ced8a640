// BatchNorm, GroupNorm and RMSNorm (nn/normalization.cpp) against Flax's docstring trees, a
// float64 derivation of each normalisation, BatchNorm's running averages followed by hand over
// several steps, and central differences. LayerNorm is tested in layers_test.cpp.
#include <cmath>
#include <functional>
#include <map>

#include <doctest/doctest.h>

#include "core/ops.hpp"
#include "core/random.hpp"
#include "nn/nn.hpp"
#include "testing.hpp"

using namespace flaxpp;
using namespace flaxpp::nn_testing;
namespace rnd = flaxpp::random;
namespace init = flaxpp::nn::initializers;

namespace {

Array normal(uint32_t seed, const Shape& shape) { return rnd::normal(rnd::PRNGKey(seed), shape); }

// Per-"group" statistics in float64: group_of(flat index) names the set an element's mean and
// variance are taken over; returns {mean, biased var} per element.
std::pair<std::vector<double>, std::vector<double>> stats_double(
    const std::vector<double>& x, const std::function<int64_t(int64_t)>& group_of,
    bool center = true) {
  std::map<int64_t, std::pair<double, int64_t>> sums;
  for (size_t i = 0; i < x.size(); ++i) {
    auto& [sum, n] = sums[group_of(static_cast<int64_t>(i))];
    sum += center ? x[i] : 0.0, ++n;
  }
  std::map<int64_t, double> sq;
  for (size_t i = 0; i < x.size(); ++i) {
    auto [sum, n] = sums[group_of(static_cast<int64_t>(i))];
    double d = x[i] - sum / static_cast<double>(n);
    sq[group_of(static_cast<int64_t>(i))] += d * d / static_cast<double>(n);
  }
  std::vector<double> mean(x.size()), var(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    int64_t g = group_of(static_cast<int64_t>(i));
    mean[i] = sums[g].first / static_cast<double>(sums[g].second);
    var[i] = sq[g];
  }
  return {mean, var};
}

std::vector<double> normalized_double(const std::vector<double>& x, const std::vector<double>& mean,
                                      const std::vector<double>& var, double eps) {
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = (x[i] - mean[i]) / std::sqrt(var[i] + eps);
  return y;
}

}  // namespace

// ---- BatchNorm -----------------------------------------------------------------------------

TEST_CASE("BatchNorm variables are Flax's docstring's: batch_stats mean/var, params scale/bias") {
  // flax/linen/normalization.py: BatchNorm(momentum=0.9, epsilon=1e-5) on normal((5, 6)),
  // init(key(1), x, use_running_average=False) ->
  //   {'batch_stats': {'mean': (6,), 'var': (6,)}, 'params': {'bias': (6,), 'scale': (6,)}}
  nn::BatchNorm bn{.momentum = 0.9, .epsilon = 1e-5};
  Array x = normal(0, {5, 6});
  Tree vars = bn.init(rnd::PRNGKey(1), x, false);
  CHECK(vars.keys() == std::vector<std::string>{"batch_stats", "params"});
  CHECK(vars.at("batch_stats").keys() == std::vector<std::string>{"mean", "var"});
  CHECK(vars.at("params").keys() == std::vector<std::string>{"scale", "bias"});
  for (const char* p : {"batch_stats/mean", "batch_stats/var", "params/scale", "params/bias"})
    CHECK(vars.at(p).array().shape() == Shape{6});
  // init does not update the running averages: zeros and ones, as created.
  for (double v : vars.at("batch_stats/mean").array().to_double()) CHECK(v == 0.0);
  for (double v : vars.at("batch_stats/var").array().to_double()) CHECK(v == 1.0);
  for (double v : vars.at("params/scale").array().to_double()) CHECK(v == 1.0);
  // Flax's defaults.
  nn::BatchNorm d;
  CHECK(d.momentum == 0.99);
  CHECK(d.epsilon == 1e-5);
  CHECK(d.axis == -1);
}

TEST_CASE("BatchNorm training: batch statistics, and running averages updated step by step") {
  for (double momentum : {0.99, 0.9}) {
    nn::BatchNorm bn{.momentum = momentum};
    Array x0 = normal(1, {8, 3});
    Tree vars = bn.init(rnd::PRNGKey(0), x0, false);
    std::vector<double> ra_mean(3, 0.0), ra_var(3, 1.0);  // float64 running averages
    for (int step = 0; step < 4; ++step) {
      Array x = normal(10 + static_cast<uint32_t>(step), {8, 3}) * 2.f + static_cast<float>(step);
      auto [y, updates] = bn.apply(vars, x, false, nn::Mutable{"batch_stats"});
      CHECK(updates.keys() == std::vector<std::string>{"batch_stats"});
      auto xd = x.to_double();
      auto [mean, var] = stats_double(xd, [](int64_t i) { return i % 3; });
      // Batch statistics of 8 O(1..3) values: float32 E[x^2] - E[x]^2 loses ~1e-6 relative of
      // E[x^2] <= ~20, so 5e-5 absolute on outputs of magnitude <= 3.
      check_close(y, normalized_double(xd, mean, var, 1e-5), 5e-5);
      for (int c = 0; c < 3; ++c) {
        ra_mean[c] = momentum * ra_mean[c] + (1 - momentum) * mean[static_cast<size_t>(c)];
        ra_var[c] = momentum * ra_var[c] + (1 - momentum) * var[static_cast<size_t>(c)];
      }
      check_close(updates.at("batch_stats/mean").array(), ra_mean, 1e-5);
      check_close(updates.at("batch_stats/var").array(), ra_var, 2e-5);
      vars = vars.set("batch_stats", updates["batch_stats"]);
    }
    // Evaluation: the running averages, no update needed (batch_stats need not be mutable).
    Array xe = normal(50, {4, 3});
    Array ye = bn.apply(vars, xe, true);
    std::vector<double> m(12), v(12);
    for (size_t i = 0; i < 12; ++i) m[i] = ra_mean[i % 3], v[i] = ra_var[i % 3];
    check_close(ye, normalized_double(xe.to_double(), m, v, 1e-5), 2e-5);
    // use_running_average on the module instead of the call.
    nn::BatchNorm eval{.use_running_average = true, .momentum = momentum};
    CHECK(bit_equal(eval.apply(vars, xe), ye));
    auto [ye2, same] = eval.apply(vars, xe, nn::Mutable{"batch_stats"});
    CHECK(tree_equal(same["batch_stats"], vars["batch_stats"]));
  }
}

TEST_CASE(
    "BatchNorm over a non-last axis (NCHW, axis = 1), use_fast_variance = false, scale and bias") {
  Array x = normal(2, {2, 3, 2, 2}) * 3.f + 1.f;
  Array scale = Array::vector({1, -2, 0.5f}), bias = Array::vector({0.25f, 0, -1});
  for (bool fast : {true, false}) {
    nn::BatchNorm bn{.axis = 1, .scale_init = constant_table(scale), .use_fast_variance = fast};
    bn.bias_init = constant_table(bias);
    Tree vars = bn.init(rnd::PRNGKey(0), x, false);
    CHECK(vars.at("params/scale").array().shape() == Shape{3});
    auto [y, upd] = bn.apply(vars, x, false, nn::Mutable{"batch_stats"});
    auto xd = x.to_double();
    auto channel = [](int64_t i) { return (i / 4) % 3; };
    auto [mean, var] = stats_double(xd, channel);
    auto want = normalized_double(xd, mean, var, 1e-5);
    auto sd = scale.to_double(), bd = bias.to_double();
    for (size_t i = 0; i < want.size(); ++i)
      want[i] = want[i] * sd[static_cast<size_t>(channel(static_cast<int64_t>(i)))] +
                bd[static_cast<size_t>(channel(static_cast<int64_t>(i)))];
    check_close(y, want, 1e-4);  // |x| up to ~10: float32 E[x^2] loses ~1e-5 absolute in var
  }
}

TEST_CASE("BatchNorm errors: use_running_average twice or never, batch_stats not mutable") {
  nn::BatchNorm bn;
  Array x = normal(3, {4, 2});
  Tree vars = bn.init(rnd::PRNGKey(0), x, false);
  CHECK_THROWS_WITH_AS(
      bn.apply(vars, x),
      "<root> (BatchNorm): use_running_average must be set on the module or at the call",
      nn::ModuleError);
  nn::BatchNorm fixed{.use_running_average = true};
  CHECK_THROWS_WITH_AS(
      fixed.apply(vars, x, true),
      "<root> (BatchNorm): use_running_average is set both on the module and at the call",
      nn::ModuleError);
  // Training writes the running averages: Flax raises ModifyScopeVariableError without mutable.
  CHECK_THROWS_WITH_AS(
      bn.apply(vars, x, false),
      "<root> (BatchNorm): cannot write 'mean': collection 'batch_stats' is not mutable (pass "
      "nn::Mutable{\"batch_stats\"} to apply)",
      nn::ModuleError);
  struct Net : nn::Module<Net> {
    Array operator()(nn::Scope& s, const Array& x) const { return s(nn::BatchNorm{}, x, true); }
  };
  CHECK_THROWS_WITH_AS(
      Net{}.apply(Tree{{"params", vars["params"]}}, x),
      "BatchNorm_0 (BatchNorm): variable 'batch_stats/BatchNorm_0/mean' is missing and collection "
      "'batch_stats' is not mutable",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(bn.apply(vars, jnp::ones({4, 3}), false, nn::Mutable{"batch_stats"}),
                       "<root> (BatchNorm): batch_stats mean (2,) and var (2,) do not match the "
                       "input's features (3,) "
                       "(input (4,3))",
                       nn::ModuleError);
  nn::BatchNorm bad_axis{.axis = 2};
  CHECK_THROWS_WITH_AS(bad_axis.init(rnd::PRNGKey(0), x, false),
                       "<root> (BatchNorm): axis (2,) is out of range for an input of shape (4,2)",
                       nn::ModuleError);
}

TEST_CASE("gradients: BatchNorm in training w.r.t. scale, bias and input") {
  nn::BatchNorm bn;
  Array x = normal(4, {4, 3});
  Tree vars = bn.init(rnd::PRNGKey(0), x, false);
  Tree params = jitter(vars["params"], 4);
  Tree stats = vars["batch_stats"];
  Array w = normal(99, {4, 3});
  Loss loss = [=](const Tree& p, const Array& in) {
    auto [y, upd] = bn.apply(Tree{{"params", p}, {"batch_stats", stats}}, in, false,
                             nn::Mutable{"batch_stats"});
    return jnp::sum(w * y + 0.5f * y * y);
  };
  check_param_grads(loss, params, x);
  check_input_grads(loss, params, x);
}

// ---- GroupNorm -----------------------------------------------------------------------------

TEST_CASE("GroupNorm statistics per (example, group) over the spatial axes, as Flax") {
  // flax docstring: GroupNorm(num_groups=3) on normal((3, 4, 5, 6)) -> scale (6,), bias (6,).
  Array x = normal(5, {3, 4, 5, 6}) * 2.f + 0.5f;
  nn::GroupNorm gn{.num_groups = 3};
  auto [y, vars] = gn.init_with_output(rnd::PRNGKey(1), x);
  CHECK(vars.at("params").keys() == std::vector<std::string>{"scale", "bias"});
  CHECK(vars.at("params/scale").array().shape() == Shape{6});
  auto xd = x.to_double();
  // Element (n, h, w, c) is in set (n, c / 2).
  auto group = [](int64_t i) { return (i / 120) * 3 + (i % 6) / 2; };
  auto [mean, var] = stats_double(xd, group);
  check_close(y, normalized_double(xd, mean, var, 1e-6), 5e-5);  // 40-element stats, |x| <= ~9
  // group_size = 2 is the same grouping; num_groups = 1 is LayerNorm over (h, w, c).
  nn::GroupNorm by_size{.num_groups = std::nullopt, .group_size = 2};
  CHECK(bit_equal(by_size.apply(vars, x), y));
  auto [m1, v1] = stats_double(xd, [](int64_t i) { return i / 120; });
  check_close(nn::GroupNorm{.num_groups = 1}.apply(vars, x), normalized_double(xd, m1, v1, 1e-6),
              5e-5);
  // Explicit reduction_axes: only the channels (every (n, h, w) row on its own).
  nn::GroupNorm rows{.num_groups = 2, .reduction_axes = std::vector<int64_t>{-1}};
  auto [m2, v2] = stats_double(xd, [](int64_t i) { return (i / 6) * 2 + (i % 6) / 3; });
  check_close(rows.apply(vars, x), normalized_double(xd, m2, v2, 1e-6), 5e-5);
  // Flax's default num_groups is 32.
  CHECK(nn::GroupNorm{}.num_groups == 32);
  CHECK(nn::GroupNorm{}.epsilon == 1e-6);
}

TEST_CASE("GroupNorm errors name the groups, the channels and the input") {
  Array x = jnp::ones({2, 3, 6});
  auto fails = [](const nn::GroupNorm& gn, const Array& in) {
    try {
      gn.init(rnd::PRNGKey(0), in);
    } catch (const nn::ModuleError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(fails({.num_groups = 4}, x) ==
        "<root> (GroupNorm): num_groups (4) does not divide the number of channels (6), input "
        "(2,3,6)");
  CHECK(fails({}, x) ==
        "<root> (GroupNorm): num_groups (32) does not divide the number of channels (6), input "
        "(2,3,6)");
  CHECK(fails({.num_groups = std::nullopt, .group_size = 4}, x) ==
        "<root> (GroupNorm): number of channels (6) is not a multiple of group_size (4), input "
        "(2,3,6)");
  CHECK(fails({.num_groups = 2, .group_size = 3}, x) ==
        "<root> (GroupNorm): either num_groups or group_size must be set (set num_groups = "
        "std::nullopt to use "
        "group_size)");
  CHECK(fails({.num_groups = 2, .reduction_axes = std::vector<int64_t>{1}}, x) ==
        "<root> (GroupNorm): reduction_axes (1,) must include the final dimension, which is the "
        "feature axis");
  CHECK(fails({.num_groups = 2}, jnp::ones({2, 6}, DType::int32)) ==
        "<root> (GroupNorm): expected a float32 input of rank >= 1, got int32 (2,6)");
}

TEST_CASE("gradients: GroupNorm w.r.t. scale, bias and input") {
  nn::GroupNorm gn{.num_groups = 2};
  Array x = normal(6, {2, 3, 4});
  Tree params = jitter(gn.init(rnd::PRNGKey(0), x)["params"], 6);
  auto loss = loss_of(gn, {2, 3, 4});
  check_param_grads(loss, params, x);
  check_input_grads(loss, params, x);
}

// ---- InstanceNorm --------------------------------------------------------------------------

TEST_CASE("InstanceNorm: statistics per (example, channel) over the spatial axes") {
  // flax docstring: InstanceNorm() on normal((2, 3, 4, 5)) -> scale (5,), bias (5,); equal to
  // GroupNorm(num_groups = channels).
  Array x = normal(9, {2, 3, 4, 5}) * 2.f - 1.f;
  nn::InstanceNorm in;
  auto [y, vars] = in.init_with_output(rnd::PRNGKey(1), x);
  CHECK(vars.at("params").keys() == std::vector<std::string>{"scale", "bias"});
  CHECK(vars.at("params/scale").array().shape() == Shape{5});
  auto xd = x.to_double();
  auto [mean, var] = stats_double(xd, [](int64_t i) { return (i / 60) * 5 + i % 5; });
  check_close(y, normalized_double(xd, mean, var, 1e-6), 5e-5);  // 12-element stats, |x| <= ~9
  check_close(nn::GroupNorm{.num_groups = 5}.apply(vars, x), y.to_double(), 1e-6);
  // feature_axes = {1}: per (example, axis-1 index), over axes 2 and 3; scale shaped (3,).
  nn::InstanceNorm ch1{.feature_axes = {1}};
  auto [y1, v1] = ch1.init_with_output(rnd::PRNGKey(1), x);
  CHECK(v1.at("params/scale").array().shape() == Shape{3});
  auto [m1, s1] = stats_double(xd, [](int64_t i) { return i / 20; });
  check_close(y1, normalized_double(xd, m1, s1, 1e-6), 5e-5);
  nn::InstanceNorm bad{.feature_axes = {0}};
  CHECK_THROWS_WITH_AS(bad.init(rnd::PRNGKey(0), x),
                       "<root> (InstanceNorm): feature_axes (0,) cannot include the leading "
                       "dimension, which is the batch axis",
                       nn::ModuleError);
  // Gradients.
  Array xs = normal(10, {2, 3, 2});
  Tree params = jitter(in.init(rnd::PRNGKey(0), xs)["params"], 10);
  auto loss = loss_of(in, {2, 3, 2});
  check_param_grads(loss, params, xs);
  check_input_grads(loss, params, xs);
}

// ---- RMSNorm -------------------------------------------------------------------------------

TEST_CASE("RMSNorm: y = x / sqrt(mean(x^2) + eps) * scale, params {scale} only") {
  // flax docstring: RMSNorm() on normal((5, 6)) -> {'params': {'scale': ones(6)}}.
  Array x = normal(7, {5, 6}) + 0.5f;
  nn::RMSNorm rms;
  auto [y, vars] = rms.init_with_output(rnd::PRNGKey(1), x);
  CHECK(vars.at("params").keys() == std::vector<std::string>{"scale"});
  CHECK(vars.at("params/scale").array().shape() == Shape{6});
  auto xd = x.to_double();
  auto rms_double = [&](const std::function<int64_t(int64_t)>& group, double eps) {
    auto [unused, ms] = stats_double(xd, group, /*center=*/false);  // var about 0 = mean(x^2)
    (void)unused;
    std::vector<double> zero(xd.size(), 0.0);
    return normalized_double(xd, zero, ms, eps);
  };
  check_close(y, rms_double([](int64_t i) { return i / 6; }, 1e-6), 1e-5);
  // reduction_axes over both axes (the whole array), features still the last axis.
  nn::RMSNorm all{.reduction_axes = {0, 1}};
  check_close(all.apply(vars, x), rms_double([](int64_t) { return 0; }, 1e-6), 1e-5);
  // scale applies per feature; use_scale = false drops it.
  Array scale = Array::vector({1, 2, -1, 0.5f, 3, 0});
  nn::RMSNorm scaled{.scale_init = constant_table(scale)};
  Array ys = scaled.apply(scaled.init(rnd::PRNGKey(0), x), x);
  auto want = rms_double([](int64_t i) { return i / 6; }, 1e-6);
  for (size_t i = 0; i < want.size(); ++i) want[i] *= scale.to_double()[i % 6];
  check_close(ys, want, 3e-5);
  CHECK(nn::RMSNorm{.use_scale = false}.init(rnd::PRNGKey(0), x).empty());
  CHECK_THROWS_WITH_AS(
      nn::RMSNorm{.reduction_axes = {3}}.init(rnd::PRNGKey(0), x),
      "<root> (RMSNorm): reduction_axes (3,) is out of range for an input of shape (5,6)",
      nn::ModuleError);
}

TEST_CASE("gradients: RMSNorm w.r.t. scale and input") {
  nn::RMSNorm rms;
  Array x = normal(8, {3, 4});
  Tree params = jitter(rms.init(rnd::PRNGKey(0), x)["params"], 8);
  auto loss = loss_of(rms, {3, 4});
  check_param_grads(loss, params, x);
  check_input_grads(loss, params, x);
}
