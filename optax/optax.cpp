#include "optax/optax.hpp"

#include <cmath>
#include <numbers>
#include <stdexcept>

#include "core/ops.hpp"
#include "core/parallel.hpp"

namespace flaxpp::optax {

namespace {

Tree zeros_like_tree(const Tree& t) {
  return tree_map([](const Array& x) { return jnp::zeros_like(x); }, t);
}

struct AdamConstants {
  float b1, b2, one_b1, one_b2, c1, c2, eps, eps_root;
};
// mu, nu and the update of scale_by_adam for n elements: the jnp formula's float32 operations in
// its order (no contraction), vectorised (the arrays never overlap).
void adam_kernel(const float* __restrict g, const float* __restrict m, const float* __restrict v, float* __restrict mu,
                 float* __restrict nu, float* __restrict out, int64_t n, AdamConstants k) {
  for (int64_t j = 0; j < n; ++j) {
    float a = k.one_b1 * g[j] + k.b1 * m[j];
    float b = k.one_b2 * (g[j] * g[j]) + k.b2 * v[j];
    mu[j] = a;
    nu[j] = b;
    out[j] = (a / k.c1) / (std::sqrt(b / k.c2 + k.eps_root) + k.eps);
  }
}

Array count_array(int64_t c) { return Array(static_cast<int32_t>(c)); }
int64_t count_of(const Tree& state) { return state.at("count").array().item<int64_t>(); }

}  // namespace

// ---- schedules --------------------------------------------------------------------------

Schedule constant_schedule(double value) {
  return [value](int64_t) { return value; };
}

Schedule linear_schedule(double init_value, double end_value, int64_t transition_steps, int64_t transition_begin) {
  return [=](int64_t count) {
    if (transition_steps <= 0) return init_value;
    double frac = std::clamp(static_cast<double>(count - transition_begin) / transition_steps, 0.0, 1.0);
    return (end_value - init_value) * frac + init_value;
  };
}

Schedule cosine_decay_schedule(double init_value, int64_t decay_steps, double alpha) {
  if (decay_steps <= 0) throw std::invalid_argument("cosine_decay_schedule: decay_steps must be positive");
  return [=](int64_t count) {
    double c = static_cast<double>(std::min(count, decay_steps));
    double cosine = 0.5 * (1 + std::cos(std::numbers::pi * c / decay_steps));
    return init_value * ((1 - alpha) * cosine + alpha);
  };
}

Schedule warmup_cosine_decay_schedule(double init_value, double peak_value, int64_t warmup_steps, int64_t decay_steps,
                                      double end_value) {
  if (decay_steps <= warmup_steps)
    throw std::invalid_argument("warmup_cosine_decay_schedule: decay_steps (" + std::to_string(decay_steps) +
                                ") must exceed warmup_steps (" + std::to_string(warmup_steps) + ")");
  auto warm = linear_schedule(init_value, peak_value, warmup_steps);
  auto decay = cosine_decay_schedule(peak_value, decay_steps - warmup_steps, peak_value == 0 ? 0 : end_value / peak_value);
  return [=](int64_t count) { return count < warmup_steps ? warm(count) : decay(count - warmup_steps); };
}

// ---- transformations -------------------------------------------------------------------

GradientTransformation scale(double step_size) {
  float s = static_cast<float>(step_size);
  return {[](const Tree&) { return Tree(); },
          [s](const Tree& u, const Tree& state, const Tree*) {
            return std::make_pair(tree_map([s](const Array& g) { return g * s; }, u), state);
          }};
}

GradientTransformation scale_by_learning_rate(LearningRate lr) {
  if (!lr.schedule) return scale(-lr.value);
  return {[](const Tree&) { return Tree{{"count", count_array(0)}}; },
          [lr](const Tree& u, const Tree& state, const Tree*) {
            int64_t c = count_of(state);
            float step = static_cast<float>(-lr.at(c));
            Tree out = tree_map([step](const Array& g) { return g * step; }, u);
            return std::make_pair(out, Tree{{"count", count_array(c + 1)}});
          }};
}

GradientTransformation trace(double decay, bool nesterov) {
  float d = static_cast<float>(decay);
  return {[](const Tree& params) { return Tree{{"trace", zeros_like_tree(params)}}; },
          [d, nesterov](const Tree& u, const Tree& state, const Tree*) {
            Tree t = tree_map([d](const Array& g, const Array& tr) { return g + d * tr; }, u, state["trace"]);
            Tree out = nesterov ? tree_map([d](const Array& g, const Array& tr) { return g + d * tr; }, u, t) : t;
            return std::make_pair(out, Tree{{"trace", t}});
          }};
}

GradientTransformation scale_by_adam(double b1d, double b2d, double epsd, double eps_rootd) {
  // As optax with Python floats: (1 - b) is computed in double, then rounded to float32.
  float b1 = static_cast<float>(b1d), b2 = static_cast<float>(b2d), eps = static_cast<float>(epsd),
        eps_root = static_cast<float>(eps_rootd), one_b1 = static_cast<float>(1 - b1d),
        one_b2 = static_cast<float>(1 - b2d);
  return {[](const Tree& params) {
            return Tree{{"count", count_array(0)}, {"mu", zeros_like_tree(params)}, {"nu", zeros_like_tree(params)}};
          },
          [=](const Tree& u, const Tree& state, const Tree*) {
            int64_t count = count_of(state) + 1;
            // optax: 1 - decay**count, a float32 power of the int32 count.
            float c1 = 1.f - std::pow(b1, static_cast<float>(count));
            float c2 = 1.f - std::pow(b2, static_cast<float>(count));
            auto [g, def] = tree_flatten(u);
            if (!(tree_structure(state["mu"]) == def && tree_structure(state["nu"]) == def))
              tree_detail::require_same_structure({&u, &state["mu"], &state["nu"]}, "scale_by_adam");
            std::vector<Array> m = tree_leaves(state["mu"]), v = tree_leaves(state["nu"]);
            std::vector<Array> mu(g.size()), nu(g.size()), out(g.size());
            for (size_t i = 0; i < g.size(); ++i) {
              if (g[i].node() || m[i].node() || v[i].node() || !g[i].is_float() || g[i].shape() != m[i].shape() ||
                  g[i].shape() != v[i].shape()) {  // traced or mismatched: the jnp definition (and its errors)
                mu[i] = one_b1 * g[i] + b1 * m[i];
                nu[i] = one_b2 * (g[i] * g[i]) + b2 * v[i];
                out[i] = (mu[i] / c1) / (jnp::sqrt(nu[i] / c2 + eps_root) + eps);
                continue;
              }
              // One pass per leaf instead of ten elementwise ops; the same float32 operations in
              // the same order (no contraction), so the same bits.
              mu[i] = Array::empty(g[i].shape(), DType::float32);
              nu[i] = Array::empty(g[i].shape(), DType::float32);
              out[i] = Array::empty(g[i].shape(), DType::float32);
              const float *pg = g[i].data<float>(), *pm = m[i].data<float>(), *pv = v[i].data<float>();
              float *pmu = mu[i].mutable_data<float>(), *pnu = nu[i].mutable_data<float>(), *po = out[i].mutable_data<float>();
              const AdamConstants k{b1, b2, one_b1, one_b2, c1, c2, eps, eps_root};
              parallel_for(g[i].size(), 1 << 15, [&](int64_t lo, int64_t hi) {
                adam_kernel(pg + lo, pm + lo, pv + lo, pmu + lo, pnu + lo, po + lo, hi - lo, k);
              });
            }
            auto like_u = [&u](const std::vector<Array>& leaves) {  // u's insertion order, as tree_map keeps
              size_t k = 0;
              return tree_map([&](const Array&) { return leaves[k++]; }, u);  // fn runs in sorted order
            };
            return std::make_pair(like_u(out),
                                  Tree{{"count", count_array(count)}, {"mu", like_u(mu)}, {"nu", like_u(nu)}});
          }};
}

GradientTransformation add_decayed_weights(double weight_decay, Mask mask) {
  float wd = static_cast<float>(weight_decay);
  return {[](const Tree&) { return Tree(); },
          [wd, mask](const Tree& u, const Tree& state, const Tree* params) {
            if (!params) throw std::invalid_argument("add_decayed_weights: update() needs the params");
            Tree out = tree_map_with_path(
                [&](const std::string& path, const Array& g) {
                  if (mask && !mask(path)) return g;
                  return g + wd * params->at(path).array();
                },
                u);
            return std::make_pair(out, state);
          }};
}

Array global_norm(const Tree& tree) {
  Array s(0.f);
  for (const Array& x : tree_leaves(tree)) s = s + jnp::sum(x * x);
  return jnp::sqrt(s);
}

GradientTransformation clip_by_global_norm(double max_norm_d) {
  float max_norm = static_cast<float>(max_norm_d);
  return {[](const Tree&) { return Tree(); },
          [max_norm](const Tree& u, const Tree& state, const Tree*) {
            Array g_norm = global_norm(u);
            Array trigger = jnp::less(g_norm, Array(max_norm));
            Tree out = tree_map([&](const Array& t) { return jnp::where(trigger, t, (t / g_norm) * max_norm); }, u);
            return std::make_pair(out, state);
          }};
}

GradientTransformation chain(std::vector<GradientTransformation> ts) {
  return {[ts](const Tree& params) {
            std::vector<Tree::Item> items;
            for (size_t i = 0; i < ts.size(); ++i) items.emplace_back(std::to_string(i), ts[i].init(params));
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

GradientTransformation sgd(LearningRate lr, std::optional<double> momentum, bool nesterov) {
  if (momentum) return chain({trace(*momentum, nesterov), scale_by_learning_rate(lr)});
  return chain({scale_by_learning_rate(lr)});
}

GradientTransformation adam(LearningRate lr, double b1, double b2, double eps, double eps_root) {
  return chain({scale_by_adam(b1, b2, eps, eps_root), scale_by_learning_rate(lr)});
}

GradientTransformation adamw(LearningRate lr, double b1, double b2, double eps, double weight_decay, Mask mask) {
  return chain({scale_by_adam(b1, b2, eps), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(lr)});
}

Tree apply_updates(const Tree& params, const Tree& updates) {
  return tree_map([](const Array& p, const Array& u) { return p + u; }, params, updates);
}

}  // namespace flaxpp::optax
