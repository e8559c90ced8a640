// optax's gradient transformations (optax/_src/transform.py and optax/transforms): the blocks
// the optimizers in alias.hpp chain. Each states its state layout (Flax's to_state_dict of the
// optax NamedTuple) and computes in float32 in optax's operation order: moments
// (1 - b) * g + b * m with (1 - b) rounded from double (a Python float), bias correction
// m / (1 - b^t) with a float32 power of the int32 count, rsqrt as 1 / sqrt.
//
//   auto tx = optax::chain({optax::scale_by_rms(0.9), optax::scale_by_learning_rate(1e-3)});
#pragma once

#include <optional>
#include <vector>

#include "base.hpp"

namespace flaxpp::optax {

// {} in, {} out: passes updates through.
GradientTransformation identity();
// step_size * g; state {}.
GradientTransformation scale(double step_size);
// -lr(count) * g (lr * g when flip_sign is false). A constant is scale(-lr): state {}; a
// schedule is scale_by_schedule: state {"count"}.
GradientTransformation scale_by_learning_rate(LearningRate lr, bool flip_sign = true);
// step_size_fn(count) * g; state {"count": int32}, count read before the increment.
GradientTransformation scale_by_schedule(Schedule step_size_fn);
// trace = g + decay * trace; out trace (nesterov: g + decay * trace); state {"trace"}.
GradientTransformation trace(double decay, bool nesterov = false);
// ema = (1 - decay) * g + decay * ema; out ema / (1 - decay^t) if debias; state {"count", "ema"}.
GradientTransformation ema(double decay, bool debias = true);
// Adam; nesterov (NAdam): m_hat = b1 * mu / (1 - b1^(t+1)) + (1 - b1) * g / (1 - b1^t).
// State {"count", "mu", "nu"}.
GradientTransformation scale_by_adam(double b1 = 0.9, double b2 = 0.999, double eps = 1e-8,
                                     double eps_root = 0.0, bool nesterov = false);
// nu = (1 - decay) * g^2 + decay * nu (initialised to initial_scale); out rsqrt(nu_hat + eps) * g
// (1 / (sqrt(nu_hat) + eps) * g without eps_in_sqrt); nu_hat = nu / (1 - decay^t) with
// bias_correction. State {"nu"} ({"count", "nu"} with bias_correction).
GradientTransformation scale_by_rms(double decay = 0.9, double eps = 1e-8,
                                    double initial_scale = 0.0, bool eps_in_sqrt = true,
                                    bool bias_correction = false);
// Centred: also mu = (1 - decay) * g + decay * mu; out rsqrt(nu - mu^2 + eps) * g.
// State {"mu", "nu"} ({"count", "mu", "nu"} with bias_correction).
GradientTransformation scale_by_stddev(double decay = 0.9, double eps = 1e-8,
                                       double initial_scale = 0.0, bool eps_in_sqrt = true,
                                       bool bias_correction = false);
// Adagrad: s = g^2 + s; out (s > 0 ? rsqrt(s + eps) : 0) * g; state {"sum_of_squares"}.
GradientTransformation scale_by_rss(double initial_accumulator_value = 0.1, double eps = 1e-7);
// Lion: out sign((1 - b1) * g + b1 * mu); mu = (1 - b2) * g + b2 * mu; state {"count", "mu"}.
GradientTransformation scale_by_lion(double b1 = 0.9, double b2 = 0.99);
// AdaBelief: nu tracks (g - mu)^2, plus eps_root, stored; out mu_hat / (sqrt(nu_hat) + eps).
// State {"count", "mu", "nu"}.
GradientTransformation scale_by_belief(double b1 = 0.9, double b2 = 0.999, double eps = 1e-16,
                                       double eps_root = 1e-16, bool nesterov = false);
// RAdam: rho_t = rho_inf - 2 t b2^t / (1 - b2^t); rectified Adam step when rho_t >= threshold,
// else mu_hat. State {"count", "mu", "nu"} (adam's).
GradientTransformation scale_by_radam(double b1 = 0.9, double b2 = 0.999, double eps = 1e-8,
                                      double eps_root = 0.0, double threshold = 5.0,
                                      bool nesterov = false);
// LAMB's layer-wise trust ratio: g * coeff * |p| / (|g| + eps) (1 where either norm is 0);
// norms below min_norm count as min_norm. Needs params; state {}.
GradientTransformation scale_by_trust_ratio(double min_norm = 0.0, double trust_coefficient = 1.0,
                                            double eps = 0.0);
// g * max(rms(p), min_scale) per leaf (Adafactor's parameter scale). Needs params; state {}.
GradientTransformation scale_by_param_block_rms(double min_scale = 1e-3);
// g + weight_decay * p, only where mask(path) is true (every leaf without a mask). State {}.
GradientTransformation add_decayed_weights(double weight_decay, Mask mask = nullptr);
// Applies each in turn; state {"0": ..., "1": ...}.
GradientTransformation chain(std::vector<GradientTransformation> transforms);

// params + updates, leaf by leaf (structures must match).
Tree apply_updates(const Tree& params, const Tree& updates);
// step_size * new + (1 - step_size) * old, leaf by leaf (EMA of parameters).
Tree incremental_update(const Tree& new_tensors, const Tree& old_tensors, double step_size);
// sqrt(sum of squares of every leaf), a float32 scalar.
Array global_norm(const Tree& tree);

namespace detail {
// Shared by the transformation files: an int32 scalar count, the count in a state, zeros and a
// constant shaped like every leaf, and 1 - decay^count in float32 as optax computes it.
Array count_array(int64_t c);
int64_t count_of(const Tree& state);
Tree zeros_like_tree(const Tree& t);
Tree full_like_tree(const Tree& t, float value);
float bias_correction(float decay, int64_t count);
const Tree& require_params(const Tree* params, const char* what);
// A tree with u's keys (in u's insertion order) and these leaves, given in sorted-key order.
Tree like(const Tree& u, const std::vector<Array>& leaves);
}  // namespace detail

}  // namespace flaxpp::optax
