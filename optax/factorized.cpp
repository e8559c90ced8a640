#include "optax/factorized.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <vector>

#include "core/ops.hpp"
#include "optax/transform.hpp"

namespace flaxpp::optax {

namespace {

// The axes to factor over, (d1, d0) with d0 the largest (numpy's argsort of the shape: stable,
// so ties keep axis order); none when the second largest is below min_dim_size_to_factor.
std::optional<std::pair<int64_t, int64_t>> factored_dims(const Shape& shape, bool factored,
                                                         int64_t min_dim) {
  if (!factored || shape.size() < 2) return std::nullopt;
  std::vector<int64_t> order(shape.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return shape[a] < shape[b]; });
  int64_t d1 = order[order.size() - 2], d0 = order.back();
  if (shape[d1] < min_dim) return std::nullopt;
  return std::make_pair(d1, d0);
}

Shape without(const Shape& s, int64_t axis) {
  Shape out = s;
  out.erase(static_cast<size_t>(axis));
  return out;
}

struct LeafUpdate {
  Array update, v_row, v_col, v;
};

LeafUpdate update_leaf(const Array& g, const Array& v_row, const Array& v_col, const Array& v,
                       const Shape& shape, float decay_t, float eps, bool factored,
                       int64_t min_dim) {
  LeafUpdate r{Array(), jnp::zeros({1}), jnp::zeros({1}), jnp::zeros({1})};
  Array grad_sqr = g * g + eps;
  float one_minus = 1.f - decay_t;
  if (auto dims = factored_dims(shape, factored, min_dim)) {
    auto [d1, d0] = *dims;
    r.v_row = decay_t * v_row + one_minus * jnp::mean(grad_sqr, {d0});
    r.v_col = decay_t * v_col + one_minus * jnp::mean(grad_sqr, {d1});
    int64_t reduced_d1 = d1 > d0 ? d1 - 1 : d1;
    Array row_col_mean = jnp::mean(r.v_row, {reduced_d1}, true);
    Array row_factor = jnp::power(r.v_row / row_col_mean, Array(-0.5f));
    Array col_factor = jnp::power(r.v_col, Array(-0.5f));
    r.update = g * jnp::expand_dims(row_factor, d0) * jnp::expand_dims(col_factor, d1);
  } else {
    r.v = decay_t * v + one_minus * grad_sqr;
    r.update = g * jnp::power(r.v, Array(-0.5f));
  }
  return r;
}

}  // namespace

GradientTransformation scale_by_factored_rms(bool factored, double decay_rate, int64_t step_offset,
                                             int64_t min_dim, double epsilon) {
  float eps = static_cast<float>(epsilon), rate = static_cast<float>(decay_rate);
  auto init = [=](const Tree& params) {
    auto moment = [&](int which) {  // 0: v_row, 1: v_col, 2: v
      return tree_map(
          [&](const Array& p) {
            auto dims = factored_dims(p.shape(), factored, min_dim);
            if (which == 2) return dims ? jnp::zeros({1}) : jnp::zeros(p.shape());
            if (!dims) return jnp::zeros({1});
            return jnp::zeros(without(p.shape(), which == 0 ? dims->second : dims->first));
          },
          params);
    };
    return Tree{{"count", detail::count_array(0)},
                {"v_row", moment(0)},
                {"v_col", moment(1)},
                {"v", moment(2)}};
  };
  auto update = [=](const Tree& u, const Tree& state, const Tree* params) {
    const Tree& p = detail::require_params(params, "scale_by_factored_rms");
    int64_t count = detail::count_of(state);
    // optax's _decay_rate_pow in float32: 1 - (float(step) + 1)^-decay_rate.
    float t = static_cast<float>(count - step_offset) + 1.f;
    float decay_t = 1.f - std::pow(t, -rate);
    std::vector<Array> g = tree_leaves(u), vr = tree_leaves(state["v_row"]),
                       vc = tree_leaves(state["v_col"]), v = tree_leaves(state["v"]),
                       pl = tree_leaves(p);
    tree_detail::require_same_structure({&u, &state["v_row"], &state["v_col"], &state["v"], &p},
                                        "scale_by_factored_rms");
    std::vector<Array> out(g.size()), nr(g.size()), nc(g.size()), nv(g.size());
    for (size_t i = 0; i < g.size(); ++i) {
      LeafUpdate r =
          update_leaf(g[i], vr[i], vc[i], v[i], pl[i].shape(), decay_t, eps, factored, min_dim);
      out[i] = r.update, nr[i] = r.v_row, nc[i] = r.v_col, nv[i] = r.v;
    }
    using detail::like;
    return std::make_pair(like(u, out), Tree{{"count", detail::count_array(count + 1)},
                                             {"v_row", like(u, nr)},
                                             {"v_col", like(u, nc)},
                                             {"v", like(u, nv)}});
  };
  return {init, update};
}

}  // namespace flaxpp::optax
