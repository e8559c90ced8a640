#include "optax/transform.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "core/ops.hpp"
#include "core/parallel.hpp"

namespace flaxpp::optax {

namespace detail {
Array count_array(int64_t c) { return Array(static_cast<int32_t>(c)); }
int64_t count_of(const Tree& state) { return state.at("count").array().item<int64_t>(); }
Tree zeros_like_tree(const Tree& t) {
  return tree_map([](const Array& x) { return jnp::zeros_like(x); }, t);
}
Tree full_like_tree(const Tree& t, float value) {
  return tree_map([value](const Array& x) { return jnp::full(x.shape(), value); }, t);
}
// optax: 1 - decay**count, a float32 power of the int32 count.
float bias_correction(float decay, int64_t count) {
  return 1.f - std::pow(decay, static_cast<float>(count));
}
const Tree& require_params(const Tree* params, const char* what) {
  if (!params) throw std::invalid_argument(std::string(what) + ": update() needs the params");
  return *params;
}
// tree_map's fn runs in sorted order, its result keeps u's insertion order.
Tree like(const Tree& u, const std::vector<Array>& leaves) {
  size_t k = 0;
  return tree_map([&](const Array&) { return leaves[k++]; }, u);
}
}  // namespace detail

using detail::bias_correction;
using detail::count_array;
using detail::count_of;
using detail::like;
using detail::zeros_like_tree;

namespace {

// As optax with Python floats: a hyper-parameter b is rounded to float32 where it multiplies an
// array, and (1 - b) is computed in double first.
float f32(double v) { return static_cast<float>(v); }

struct AdamConstants {
  float b1, b2, one_b1, one_b2, c1, c2, eps, eps_root;
};
// mu, nu and the update of scale_by_adam for n elements: the jnp formula's float32 operations in
// its order (no contraction), vectorised (the arrays never overlap).
void adam_kernel(const float* __restrict g, const float* __restrict m, const float* __restrict v,
                 float* __restrict mu, float* __restrict nu, float* __restrict out, int64_t n,
                 AdamConstants k) {
  for (int64_t j = 0; j < n; ++j) {
    float a = k.one_b1 * g[j] + k.b1 * m[j];
    float b = k.one_b2 * (g[j] * g[j]) + k.b2 * v[j];
    mu[j] = a;
    nu[j] = b;
    out[j] = (a / k.c1) / (std::sqrt(b / k.c2 + k.eps_root) + k.eps);
  }
}

// (1 - decay) * g^order + decay * m, optax's update_moment (order 1) and
// update_moment_per_elem_norm (order 2, g * g).
Tree update_moment(const Tree& g, const Tree& m, double decay, int order) {
  float d = f32(decay), one_d = f32(1 - decay);
  if (order == 1)
    return tree_map([=](const Array& x, const Array& t) { return one_d * x + d * t; }, g, m);
  return tree_map([=](const Array& x, const Array& t) { return one_d * (x * x) + d * t; }, g, m);
}

Tree divide_by(const Tree& t, float c) {
  return tree_map([c](const Array& x) { return x / c; }, t);
}

// NAdam's look-ahead first moment: b1 * mu / (1 - b1^(t+1)) + (1 - b1) * g / (1 - b1^t).
Tree nesterov_mu_hat(const Tree& mu, const Tree& g, double b1, int64_t count) {
  float c_next = bias_correction(f32(b1), count + 1), c = bias_correction(f32(b1), count);
  float b = f32(b1), one_b = f32(1 - b1);
  return tree_map(
      [=](const Array& m, const Array& x) { return b * (m / c_next) + one_b * (x / c); }, mu, g);
}

// The fused scale_by_adam for one plain float32 leaf; false when the leaf needs the jnp path.
bool adam_fused(const Array& g, const Array& m, const Array& v, Array& mu, Array& nu, Array& out,
                const AdamConstants& k) {
  if (g.node() || m.node() || v.node() || !g.is_float() || g.shape() != m.shape() ||
      g.shape() != v.shape())
    return false;  // traced or mismatched: the jnp definition (and its errors)
  // One pass per leaf instead of ten elementwise ops; the same float32 operations in the same
  // order (no contraction), so the same bits.
  mu = Array::empty(g.shape(), DType::float32);
  nu = Array::empty(g.shape(), DType::float32);
  out = Array::empty(g.shape(), DType::float32);
  const float *pg = g.data<float>(), *pm = m.data<float>(), *pv = v.data<float>();
  float *pmu = mu.mutable_data<float>(), *pnu = nu.mutable_data<float>(),
        *po = out.mutable_data<float>();
  parallel_for(g.size(), 1 << 15, [&](int64_t lo, int64_t hi) {
    adam_kernel(pg + lo, pm + lo, pv + lo, pmu + lo, pnu + lo, po + lo, hi - lo, k);
  });
  return true;
}

}  // namespace

// ---- scaling -------------------------------------------------------------------------------

GradientTransformation identity() {
  return {[](const Tree&) { return Tree(); },
          [](const Tree& u, const Tree& state, const Tree*) { return std::make_pair(u, state); }};
}

GradientTransformation scale(double step_size) {
  float s = f32(step_size);
  return {[](const Tree&) { return Tree(); },
          [s](const Tree& u, const Tree& state, const Tree*) {
            return std::make_pair(tree_map([s](const Array& g) { return g * s; }, u), state);
          }};
}

GradientTransformation scale_by_schedule(Schedule step_size_fn) {
  return {[](const Tree&) {
            return Tree{{"count", count_array(0)}};
          },
          [step_size_fn](const Tree& u, const Tree& state, const Tree*) {
            int64_t c = count_of(state);
            float step = f32(step_size_fn(c));
            Tree out = tree_map([step](const Array& g) { return g * step; }, u);
            return std::make_pair(out, Tree{{"count", count_array(c + 1)}});
          }};
}

GradientTransformation scale_by_learning_rate(LearningRate lr, bool flip_sign) {
  double m = flip_sign ? -1.0 : 1.0;
  if (!lr.schedule) return scale(m * lr.value);
  return scale_by_schedule([lr, m](int64_t c) { return m * lr.at(c); });
}

// ---- moments -------------------------------------------------------------------------------

GradientTransformation trace(double decay, bool nesterov) {
  float d = f32(decay);
  return {[](const Tree& params) {
            return Tree{{"trace", zeros_like_tree(params)}};
          },
          [d, nesterov](const Tree& u, const Tree& state, const Tree*) {
            auto step = [d](const Array& g, const Array& tr) { return g + d * tr; };
            Tree t = tree_map(step, u, state["trace"]);
            Tree out = nesterov ? tree_map(step, u, t) : t;
            return std::make_pair(out, Tree{{"trace", t}});
          }};
}

GradientTransformation ema(double decay, bool debias) {
  return {[](const Tree& params) {
            return Tree{{"count", count_array(0)}, {"ema", zeros_like_tree(params)}};
          },
          [decay, debias](const Tree& u, const Tree& state, const Tree*) {
            Tree e = update_moment(u, state["ema"], decay, 1);
            int64_t count = count_of(state) + 1;
            Tree out = debias ? divide_by(e, bias_correction(f32(decay), count)) : e;
            return std::make_pair(out, Tree{{"count", count_array(count)}, {"ema", e}});
          }};
}

GradientTransformation scale_by_adam(double b1d, double b2d, double epsd, double eps_rootd,
                                     bool nesterov) {
  float b1 = f32(b1d), b2 = f32(b2d), eps = f32(epsd), eps_root = f32(eps_rootd),
        one_b1 = f32(1 - b1d), one_b2 = f32(1 - b2d);
  return {
      [](const Tree& params) {
        return Tree{{"count", count_array(0)},
                    {"mu", zeros_like_tree(params)},
                    {"nu", zeros_like_tree(params)}};
      },
      [=](const Tree& u, const Tree& state, const Tree*) {
        int64_t count = count_of(state) + 1;
        float c1 = bias_correction(b1, count), c2 = bias_correction(b2, count);
        if (nesterov) {
          Tree mu = update_moment(u, state["mu"], b1d, 1);
          Tree nu = update_moment(u, state["nu"], b2d, 2);
          Tree out =
              tree_map([=](const Array& m,
                           const Array& v) { return m / (jnp::sqrt(v / c2 + eps_root) + eps); },
                       nesterov_mu_hat(mu, u, b1d, count), nu);
          return std::make_pair(out, Tree{{"count", count_array(count)}, {"mu", mu}, {"nu", nu}});
        }
        auto [g, def] = tree_flatten(u);
        if (!(tree_structure(state["mu"]) == def && tree_structure(state["nu"]) == def))
          tree_detail::require_same_structure({&u, &state["mu"], &state["nu"]}, "scale_by_adam");
        std::vector<Array> m = tree_leaves(state["mu"]), v = tree_leaves(state["nu"]);
        std::vector<Array> mu(g.size()), nu(g.size()), out(g.size());
        const AdamConstants k{b1, b2, one_b1, one_b2, c1, c2, eps, eps_root};
        for (size_t i = 0; i < g.size(); ++i) {
          if (adam_fused(g[i], m[i], v[i], mu[i], nu[i], out[i], k)) continue;
          mu[i] = one_b1 * g[i] + b1 * m[i];
          nu[i] = one_b2 * (g[i] * g[i]) + b2 * v[i];
          out[i] = (mu[i] / c1) / (jnp::sqrt(nu[i] / c2 + eps_root) + eps);
        }
        return std::make_pair(
            like(u, out),
            Tree{{"count", count_array(count)}, {"mu", like(u, mu)}, {"nu", like(u, nu)}});
      }};
}

namespace {
// The state of scale_by_rms / scale_by_stddev: {"count"}? then the moments.
Tree rms_state(bool bias_correction, int64_t count, std::vector<Tree::Item> moments) {
  if (bias_correction) moments.insert(moments.begin(), {"count", count_array(count)});
  return Tree::dict(std::move(moments));
}
Array rms_scaling(const Array& n, float eps, bool eps_in_sqrt) {
  return eps_in_sqrt ? jnp::rsqrt(n + eps) : 1.f / (jnp::sqrt(n) + eps);
}
}  // namespace

GradientTransformation scale_by_rms(double decay, double epsd, double initial_scale,
                                    bool eps_in_sqrt, bool bias_corr) {
  float eps = f32(epsd), init = f32(initial_scale);
  return {
      [=](const Tree& params) {
        return rms_state(bias_corr, 0, {{"nu", detail::full_like_tree(params, init)}});
      },
      [=](const Tree& u, const Tree& state, const Tree*) {
        Tree nu = update_moment(u, state["nu"], decay, 2);
        int64_t count = bias_corr ? count_of(state) + 1 : 0;
        Tree nu_hat = bias_corr ? divide_by(nu, bias_correction(f32(decay), count)) : nu;
        Tree out = tree_map(
            [=](const Array& n, const Array& g) { return rms_scaling(n, eps, eps_in_sqrt) * g; },
            nu_hat, u);
        return std::make_pair(out, rms_state(bias_corr, count, {{"nu", nu}}));
      }};
}

GradientTransformation scale_by_stddev(double decay, double epsd, double initial_scale,
                                       bool eps_in_sqrt, bool bias_corr) {
  float eps = f32(epsd), init = f32(initial_scale);
  return {[=](const Tree& params) {
            return rms_state(
                bias_corr, 0,
                {{"mu", zeros_like_tree(params)}, {"nu", detail::full_like_tree(params, init)}});
          },
          [=](const Tree& u, const Tree& state, const Tree*) {
            Tree mu = update_moment(u, state["mu"], decay, 1);
            Tree nu = update_moment(u, state["nu"], decay, 2);
            int64_t count = bias_corr ? count_of(state) + 1 : 0;
            float c = bias_corr ? bias_correction(f32(decay), count) : 1.f;
            Tree mu_hat = bias_corr ? divide_by(mu, c) : mu,
                 nu_hat = bias_corr ? divide_by(nu, c) : nu;
            Tree out = tree_map(
                [=](const Array& m, const Array& n, const Array& g) {
                  return rms_scaling(n - m * m, eps, eps_in_sqrt) * g;
                },
                mu_hat, nu_hat, u);
            return std::make_pair(out, rms_state(bias_corr, count, {{"mu", mu}, {"nu", nu}}));
          }};
}

GradientTransformation scale_by_rss(double initial_accumulator_value, double epsd) {
  float init = f32(initial_accumulator_value), eps = f32(epsd);
  return {[init](const Tree& params) {
            return Tree{{"sum_of_squares", detail::full_like_tree(params, init)}};
          },
          [eps](const Tree& u, const Tree& state, const Tree*) {
            Tree s = tree_map([](const Array& g, const Array& t) { return g * g + t; }, u,
                              state["sum_of_squares"]);
            Tree out = tree_map(
                [eps](const Array& t, const Array& g) {
                  return jnp::where(jnp::greater(t, Array(0.f)), jnp::rsqrt(t + eps), Array(0.f)) *
                         g;
                },
                s, u);
            return std::make_pair(out, Tree{{"sum_of_squares", s}});
          }};
}

GradientTransformation scale_by_lion(double b1d, double b2d) {
  float b1 = f32(b1d), one_b1 = f32(1 - b1d);
  return {
      [](const Tree& params) {
        return Tree{{"count", count_array(0)}, {"mu", zeros_like_tree(params)}};
      },
      [=](const Tree& u, const Tree& state, const Tree*) {
        Tree out =
            tree_map([=](const Array& g, const Array& m) { return jnp::sign(one_b1 * g + b1 * m); },
                     u, state["mu"]);
        Tree mu = update_moment(u, state["mu"], b2d, 1);
        return std::make_pair(out, Tree{{"count", count_array(count_of(state) + 1)}, {"mu", mu}});
      }};
}

GradientTransformation scale_by_belief(double b1d, double b2d, double epsd, double eps_rootd,
                                       bool nesterov) {
  float eps = f32(epsd), eps_root = f32(eps_rootd);
  return {[](const Tree& params) {
            return Tree{{"count", count_array(0)},
                        {"mu", zeros_like_tree(params)},
                        {"nu", zeros_like_tree(params)}};
          },
          [=](const Tree& u, const Tree& state, const Tree*) {
            Tree mu = update_moment(u, state["mu"], b1d, 1);
            Tree err = tree_map([](const Array& g, const Array& m) { return g - m; }, u, mu);
            Tree nu = tree_map([eps_root](const Array& v) { return v + eps_root; },
                               update_moment(err, state["nu"], b2d, 2));
            int64_t count = count_of(state) + 1;
            Tree mu_hat = nesterov ? nesterov_mu_hat(mu, u, b1d, count)
                                   : divide_by(mu, bias_correction(f32(b1d), count));
            float c2 = bias_correction(f32(b2d), count);
            Tree out = tree_map(
                [=](const Array& m, const Array& v) { return m / (jnp::sqrt(v / c2) + eps); },
                mu_hat, nu);
            return std::make_pair(out, Tree{{"count", count_array(count)}, {"mu", mu}, {"nu", nu}});
          }};
}

GradientTransformation scale_by_radam(double b1d, double b2d, double epsd, double eps_rootd,
                                      double threshold, bool nesterov) {
  float eps = f32(epsd), eps_root = f32(eps_rootd);
  const double ro_inf = 2.0 / (1.0 - b2d) - 1.0;
  return {[](const Tree& params) {
            return Tree{{"count", count_array(0)},
                        {"mu", zeros_like_tree(params)},
                        {"nu", zeros_like_tree(params)}};
          },
          [=](const Tree& u, const Tree& state, const Tree*) {
            Tree mu = update_moment(u, state["mu"], b1d, 1);
            Tree nu = update_moment(u, state["nu"], b2d, 2);
            int64_t count = count_of(state) + 1;
            // rho_t in float32 as optax: b2^t, 2 * t (int32) * b2^t / (1 - b2^t).
            float b2t = std::pow(f32(b2d), static_cast<float>(count));
            float ro = f32(ro_inf) - static_cast<float>(2 * count) * b2t / (1.f - b2t);
            Tree mu_hat = nesterov ? nesterov_mu_hat(mu, u, b1d, count)
                                   : divide_by(mu, bias_correction(f32(b1d), count));
            Tree out = mu_hat;
            if (ro >= f32(threshold)) {
              float r = std::sqrt((ro - 4.f) * (ro - 2.f) * f32(ro_inf) /
                                  (f32((ro_inf - 4.0) * (ro_inf - 2.0)) * ro));
              float c2 = bias_correction(f32(b2d), count);
              out = tree_map(
                  [=](const Array& m, const Array& v) {
                    return r * m / (jnp::sqrt(v / c2 + eps_root) + eps);
                  },
                  mu_hat, nu);
            }
            return std::make_pair(out, Tree{{"count", count_array(count)}, {"mu", mu}, {"nu", nu}});
          }};
}

// ---- parameter-dependent -------------------------------------------------------------------

namespace {
// max(|x|, min) as optax's safe_norm, a float32 scalar.
float safe_norm(const Array& x, float min_norm) {
  float n = jnp::sqrt(jnp::sum(x * x)).item<float>();
  return n <= min_norm ? min_norm : n;
}
}  // namespace

GradientTransformation scale_by_trust_ratio(double min_normd, double trust_coefficient,
                                            double epsd) {
  float min_norm = f32(min_normd), coeff = f32(trust_coefficient), eps = f32(epsd);
  return {[](const Tree&) { return Tree(); },
          [=](const Tree& u, const Tree& state, const Tree* params) {
            const Tree& p = detail::require_params(params, "scale_by_trust_ratio");
            Tree out = tree_map(
                [=](const Array& g, const Array& w) {
                  float pn = safe_norm(w, min_norm), un = safe_norm(g, min_norm);
                  float ratio = (pn == 0.f || un == 0.f) ? 1.f : coeff * pn / (un + eps);
                  return g * ratio;
                },
                u, p);
            return std::make_pair(out, state);
          }};
}

GradientTransformation scale_by_param_block_rms(double min_scaled) {
  float min_scale = f32(min_scaled);
  return {[](const Tree&) { return Tree(); },
          [=](const Tree& u, const Tree& state, const Tree* params) {
            const Tree& p = detail::require_params(params, "scale_by_param_block_rms");
            Tree out = tree_map(
                [=](const Array& g, const Array& w) {
                  float rms = jnp::sqrt(jnp::mean(w * w)).item<float>();
                  return g * (rms <= min_scale ? min_scale : rms);
                },
                u, p);
            return std::make_pair(out, state);
          }};
}

GradientTransformation add_decayed_weights(double weight_decay, Mask mask) {
  float wd = f32(weight_decay);
  return {[](const Tree&) { return Tree(); },
          [wd, mask](const Tree& u, const Tree& state, const Tree* params) {
            const Tree& p = detail::require_params(params, "add_decayed_weights");
            Tree out = tree_map_with_path(
                [&](const std::string& path, const Array& g) {
                  if (mask && !mask(path)) return g;
                  return g + wd * p.at(path).array();
                },
                u);
            return std::make_pair(out, state);
          }};
}

GradientTransformation chain(std::vector<GradientTransformation> ts) {
  return {[ts](const Tree& params) {
            std::vector<Tree::Item> items;
            for (size_t i = 0; i < ts.size(); ++i)
              items.emplace_back(std::to_string(i), ts[i].init(params));
            return Tree::dict(items);
          },
          [ts](const Tree& u, const Tree& state, const Tree* params) {
            Tree cur = u;
            std::vector<Tree::Item> states;
            for (size_t i = 0; i < ts.size(); ++i) {
              auto [next, s] = ts[i].update_fn(cur, state[std::to_string(i)], params);
              cur = next;
              states.emplace_back(std::to_string(i), s);
            }
            return std::make_pair(cur, Tree::dict(states));
          }};
}

Tree apply_updates(const Tree& params, const Tree& updates) {
  return tree_map([](const Array& p, const Array& u) { return p + u; }, params, updates);
}

Tree incremental_update(const Tree& new_tensors, const Tree& old_tensors, double step_size) {
  float s = f32(step_size), one_s = f32(1.0 - step_size);
  return tree_map([=](const Array& n, const Array& o) { return s * n + one_s * o; }, new_tensors,
                  old_tensors);
}

Array global_norm(const Tree& tree) {
  Array s(0.f);
  for (const Array& x : tree_leaves(tree)) s = s + jnp::sum(x * x);
  return jnp::sqrt(s);
}

}  // namespace flaxpp::optax
