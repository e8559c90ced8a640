#include "nn/normalization.hpp"

#include <algorithm>
#include <tuple>

#include "core/ops.hpp"
#include "core/ops_fused.hpp"

namespace flaxpp::nn {

Array LayerNorm::operator()(Scope& s, const Array& x) const {
  if (!x.is_float() || x.ndim() == 0)
    s.fail(std::string("expected a float32 input of rank >= 1, got ") + dtype_name(x.dtype()) +
           " " + to_string(x.shape()));
  int64_t d = x.shape().back();
  std::optional<Array> scale, bias;
  if (use_scale) scale = s.param("scale", scale_init, {d});
  if (use_bias) bias = s.param("bias", bias_init, {d});
  // Flax's formula in one pass (core/ops_fused.hpp): mean = E[x], var = E[x^2] - mean^2, clipped
  // at 0 except under the 2021 profile (Flax 0.3.4), y = (x - mean) * (rsqrt(var + eps) * scale) + bias.
  return fused::layer_norm(x, scale, bias, static_cast<float>(epsilon),
                           s.compat() != Compat::v2021);
}

}  // namespace flaxpp::nn

// ---- BatchNorm, GroupNorm, RMSNorm: Flax's _compute_stats and _normalize, composed ----------

namespace flaxpp::nn {

namespace {

std::string axes_string(const std::vector<int64_t>& v) {
  std::string r = "(";
  for (size_t i = 0; i < v.size(); ++i) r += (i ? ", " : "") + std::to_string(v[i]);
  return r + (v.size() == 1 ? ",)" : ")");
}

void require_float(Scope& s, const Array& x) {
  if (!x.is_float() || x.ndim() == 0)
    s.fail(std::string("expected a float32 input of rank >= 1, got ") + dtype_name(x.dtype()) +
           " " + to_string(x.shape()));
}

// Flax's _canonicalize_axes: non-negative, deduplicated, sorted.
std::vector<int64_t> canonical_axes(Scope& s, const std::vector<int64_t>& axes, const Array& x,
                                    const char* field) {
  std::vector<int64_t> r;
  auto nd = static_cast<int64_t>(x.ndim());
  for (int64_t a : axes) {
    if (a < -nd || a >= nd)
      s.fail(std::string(field) + " " + axes_string(axes) +
             " is out of range for an input of shape " + to_string(x.shape()));
    r.push_back(a < 0 ? a + nd : a);
  }
  std::sort(r.begin(), r.end());
  r.erase(std::unique(r.begin(), r.end()), r.end());
  return r;
}

// mean and var over `axes` (kept as size-1 axes). Statistics carry no gradient to the running
// averages; the caller decides what to differentiate.
std::pair<Array, Array> compute_stats(const Array& x, const Axes& axes, bool use_mean,
                                      bool use_fast_variance) {
  if (!use_mean) {
    Array var = jnp::mean(jnp::square(x), axes, true);
    return {jnp::zeros_like(var), var};
  }
  Array mu = jnp::mean(x, axes, true);
  if (use_fast_variance) {
    Array mu2 = jnp::mean(jnp::square(x), axes, true);
    return {mu, jnp::maximum(Array(0.f), mu2 - jnp::square(mu))};  // clipped: roundoff can go < 0
  }
  return {mu, jnp::mean(jnp::square(x - mu), axes, true)};
}

// Flax's _normalize: y = (x - mean) * (rsqrt(var + eps) * scale) + bias; scale then bias are
// declared (counters 1, 2) with the feature axes' sizes and broadcast over the others.
Array normalize(Scope& s, const Array& x, const Array& mean, const Array& var,
                const std::vector<int64_t>& feature_axes, double epsilon, bool use_bias,
                bool use_scale, const Initializer& bias_init, const Initializer& scale_init) {
  Shape feature_shape, broadcast_shape;
  for (size_t d = 0; d < x.ndim(); ++d) {
    bool feature = std::find(feature_axes.begin(), feature_axes.end(), static_cast<int64_t>(d)) !=
                   feature_axes.end();
    broadcast_shape.push_back(feature ? x.shape()[d] : 1);
    if (feature) feature_shape.push_back(x.shape()[d]);
  }
  Array y = x - mean;
  Array mul = jnp::rsqrt(var + static_cast<float>(epsilon));
  if (use_scale)
    mul = mul * jnp::reshape(s.param("scale", scale_init, feature_shape), broadcast_shape);
  y = y * mul;
  if (use_bias) y = y + jnp::reshape(s.param("bias", bias_init, feature_shape), broadcast_shape);
  return y;
}

}  // namespace

Array BatchNorm::operator()(Scope& s, const Array& x,
                            std::optional<bool> use_running_average_arg) const {
  if (use_running_average.has_value() == use_running_average_arg.has_value())
    s.fail(use_running_average ? "use_running_average is set both on the module and at the call"
                               : "use_running_average must be set on the module or at the call");
  bool running = use_running_average ? *use_running_average : *use_running_average_arg;
  require_float(s, x);
  std::vector<int64_t> features = canonical_axes(s, {axis}, x, "axis");
  Axes reduction;
  Shape feature_shape, keep_shape;
  for (size_t d = 0; d < x.ndim(); ++d) {
    bool feature = static_cast<int64_t>(d) == features[0];
    if (feature)
      feature_shape.push_back(x.shape()[d]);
    else
      reduction.push_back(static_cast<int64_t>(d));
    keep_shape.push_back(feature ? x.shape()[d] : 1);
  }
  Array ra_mean = s.variable("batch_stats", "mean", [&] { return jnp::zeros(feature_shape); });
  Array ra_var = s.variable("batch_stats", "var", [&] { return jnp::ones(feature_shape); });
  if (ra_mean.shape() != feature_shape || ra_var.shape() != feature_shape)
    s.fail("batch_stats mean " + to_string(ra_mean.shape()) + " and var " +
           to_string(ra_var.shape()) + " do not match the input's features " +
           to_string(feature_shape) + " (input " + to_string(x.shape()) + ")");
  Array mean, var;
  if (running) {
    mean = jnp::reshape(ra_mean, keep_shape);
    var = jnp::reshape(ra_var, keep_shape);
  } else {
    std::tie(mean, var) = compute_stats(x, reduction, true, use_fast_variance);
    if (!s.is_initializing()) {
      // float32(momentum) * ra + float32(1 - momentum) * batch statistic, as JAX's weak types.
      const float m = static_cast<float>(momentum), m1 = static_cast<float>(1.0 - momentum);
      Array bm = jnp::reshape(jnp::stop_gradient(mean), feature_shape);
      Array bv = jnp::reshape(jnp::stop_gradient(var), feature_shape);
      s.put_variable("batch_stats", "mean", m * ra_mean + m1 * bm);
      s.put_variable("batch_stats", "var", m * ra_var + m1 * bv);
    }
  }
  return normalize(s, x, mean, var, features, epsilon, use_bias, use_scale, bias_init, scale_init);
}

Array GroupNorm::operator()(Scope& s, const Array& x) const {
  require_float(s, x);
  auto nd = static_cast<int64_t>(x.ndim());
  std::vector<int64_t> red_in;
  if (reduction_axes) {
    red_in = *reduction_axes;
  } else {
    for (int64_t d = 1; d < nd - 1; ++d) red_in.push_back(d);
    red_in.push_back(-1);
  }
  std::vector<int64_t> red = canonical_axes(s, red_in, x, "reduction_axes");
  if (red.empty() || red.back() != nd - 1)
    s.fail("reduction_axes " + axes_string(red_in) +
           " must include the final dimension, which is the feature axis");
  if (num_groups.has_value() == group_size.has_value())
    s.fail(
        "either num_groups or group_size must be set (set num_groups = std::nullopt to use "
        "group_size)");
  int64_t channels = x.shape().back();
  int64_t groups = 0;
  if (group_size) {
    if (*group_size <= 0 || channels % *group_size != 0)
      s.fail("number of channels (" + std::to_string(channels) +
             ") is not a multiple of group_size (" + std::to_string(*group_size) + "), input " +
             to_string(x.shape()));
    groups = channels / *group_size;
  } else {
    groups = *num_groups;
  }
  if (groups <= 0 || channels % groups != 0)
    s.fail("num_groups (" + std::to_string(groups) + ") does not divide the number of channels (" +
           std::to_string(channels) + "), input " + to_string(x.shape()));
  // (..., C) -> (..., G, C / G): statistics over the reduction axes but the last, and the group.
  Shape group_shape;
  for (int64_t d = 0; d < nd - 1; ++d) group_shape.push_back(x.shape()[static_cast<size_t>(d)]);
  group_shape.push_back(groups);
  group_shape.push_back(channels / groups);
  Axes stat_axes(red.begin(), red.end() - 1);
  stat_axes.push_back(nd);  // the within-group axis of the grouped array
  auto [mu, var] = compute_stats(jnp::reshape(x, group_shape), stat_axes, true, use_fast_variance);
  // Repeated over each group's channels (Flax's jnp.repeat), laid out like x.
  Array mean = jnp::reshape(jnp::broadcast_to(mu, group_shape), x.shape());
  Array variance = jnp::reshape(jnp::broadcast_to(var, group_shape), x.shape());
  return normalize(s, x, mean, variance, {nd - 1}, epsilon, use_bias, use_scale, bias_init,
                   scale_init);
}

Array InstanceNorm::operator()(Scope& s, const Array& x) const {
  require_float(s, x);
  std::vector<int64_t> feat = canonical_axes(s, feature_axes, x, "feature_axes");
  if (!feat.empty() && feat[0] == 0)
    s.fail("feature_axes " + axes_string(feature_axes) +
           " cannot include the leading dimension, which is the batch axis");
  Axes reduction;
  for (int64_t d = 1; d < static_cast<int64_t>(x.ndim()); ++d)
    if (std::find(feat.begin(), feat.end(), d) == feat.end()) reduction.push_back(d);
  auto [mean, var] = compute_stats(x, reduction, true, use_fast_variance);
  return normalize(s, x, mean, var, feat, epsilon, use_bias, use_scale, bias_init, scale_init);
}

Array RMSNorm::operator()(Scope& s, const Array& x) const {
  require_float(s, x);
  std::vector<int64_t> red = canonical_axes(s, reduction_axes, x, "reduction_axes");
  std::vector<int64_t> feat = canonical_axes(s, feature_axes, x, "feature_axes");
  auto [mean, var] = compute_stats(x, Axes(red.begin(), red.end()), false, true);
  return normalize(s, x, mean, var, feat, epsilon, false, use_scale, initializers::zeros,
                   scale_init);
}

}  // namespace flaxpp::nn
