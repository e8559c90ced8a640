#include "nn/optim.hpp"

#include <cmath>
#include <numbers>
#include <stdexcept>

#include "core/ops.hpp"

namespace flaxpp::optax {

namespace {

Tree zeros_like_tree(const Tree& t) {
  return tree_map([](const Array& x) { return jnp::zeros_like(x); }, t);
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
            Tree mu = tree_map([=](const Array& g, const Array& m) { return one_b1 * g + b1 * m; }, u, state["mu"]);
            Tree nu = tree_map([=](const Array& g, const Array& v) { return one_b2 * (g * g) + b2 * v; }, u, state["nu"]);
            int64_t count = count_of(state) + 1;
            // optax: 1 - decay**count, a float32 power of the int32 count.
            float c1 = 1.f - std::pow(b1, static_cast<float>(count));
            float c2 = 1.f - std::pow(b2, static_cast<float>(count));
            Tree out = tree_map(
                [=](const Array& m, const Array& v) {
                  Array m_hat = m / c1, v_hat = v / c2;
                  return m_hat / (jnp::sqrt(v_hat + eps_root) + eps);
                },
                mu, nu);
            return std::make_pair(out, Tree{{"count", count_array(count)}, {"mu", mu}, {"nu", nu}});
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
