// optax's optimizers (optax/_src/alias.py): chains of the transformations in transform.hpp with
// optax's names, argument order and defaults; each state is the chain's {"0": ..., "1": ...}.
//
//   auto tx = optax::rmsprop(1e-3, 0.9, 1e-8, 0.0, true, /*centered=*/true, /*momentum=*/0.9);
//   auto tx2 = optax::adafactor(1e-2);   // factored second moments for leaves >= 128 x 128
#pragma once

#include <cstdint>
#include <optional>

#include "base.hpp"

namespace flaxpp::optax {

// chain(trace(momentum, nesterov) if momentum, scale_by_learning_rate)
GradientTransformation sgd(LearningRate lr, std::optional<double> momentum = std::nullopt,
                           bool nesterov = false);
// chain(scale_by_adam, scale_by_learning_rate); nesterov is NAdam.
GradientTransformation adam(LearningRate lr, double b1 = 0.9, double b2 = 0.999, double eps = 1e-8,
                            double eps_root = 0.0, bool nesterov = false);
// adam with nesterov = true.
GradientTransformation nadam(LearningRate lr, double b1 = 0.9, double b2 = 0.999, double eps = 1e-8,
                             double eps_root = 0.0);
// chain(scale_by_adam, add_decayed_weights(weight_decay, mask), scale_by_learning_rate)
GradientTransformation adamw(LearningRate lr, double b1 = 0.9, double b2 = 0.999, double eps = 1e-8,
                             double weight_decay = 1e-4, Mask mask = nullptr);
// chain(scale_by_rms or (centered) scale_by_stddev, scale_by_learning_rate,
//       trace(momentum, nesterov) if momentum else identity)
GradientTransformation rmsprop(LearningRate lr, double decay = 0.9, double eps = 1e-8,
                               double initial_scale = 0.0, bool eps_in_sqrt = true,
                               bool centered = false, std::optional<double> momentum = std::nullopt,
                               bool nesterov = false, bool bias_correction = false);
// chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate)
GradientTransformation adagrad(LearningRate lr, double initial_accumulator_value = 0.1,
                               double eps = 1e-7);
// chain(scale_by_factored_rms, clip_by_block_rms(clipping_threshold) if set,
//       scale_by_learning_rate(lr, flip_sign=false) if lr, scale_by_param_block_rms() if
//       multiply_by_parameter_scale, ema(momentum, debias=false) if momentum,
//       add_decayed_weights(weight_decay_rate, mask) if set, scale(-1))
GradientTransformation adafactor(std::optional<LearningRate> lr = std::nullopt,
                                 int64_t min_dim_size_to_factor = 128, double decay_rate = 0.8,
                                 int64_t decay_offset = 0, bool multiply_by_parameter_scale = true,
                                 std::optional<double> clipping_threshold = 1.0,
                                 std::optional<double> momentum = std::nullopt,
                                 std::optional<double> weight_decay_rate = std::nullopt,
                                 double eps = 1e-30, bool factored = true,
                                 Mask weight_decay_mask = nullptr);
// chain(scale_by_lion(b1, b2), add_decayed_weights(weight_decay, mask), scale_by_learning_rate)
GradientTransformation lion(LearningRate lr, double b1 = 0.9, double b2 = 0.99,
                            double weight_decay = 1e-3, Mask mask = nullptr);
// chain(scale_by_adam(b1, b2, eps, eps_root), add_decayed_weights(weight_decay, mask),
//       scale_by_trust_ratio(), scale_by_learning_rate)
GradientTransformation lamb(LearningRate lr, double b1 = 0.9, double b2 = 0.999, double eps = 1e-6,
                            double eps_root = 0.0, double weight_decay = 0.0, Mask mask = nullptr);
// chain(scale_by_belief, add_decayed_weights(weight_decay, mask) if set, scale_by_learning_rate)
GradientTransformation adabelief(LearningRate lr, double b1 = 0.9, double b2 = 0.999,
                                 double eps = 1e-16, double eps_root = 1e-16,
                                 std::optional<double> weight_decay = std::nullopt,
                                 Mask weight_decay_mask = nullptr, bool nesterov = false);
// chain(scale_by_radam, scale_by_learning_rate)
GradientTransformation radam(LearningRate lr, double b1 = 0.9, double b2 = 0.999, double eps = 1e-8,
                             double eps_root = 0.0, double threshold = 5.0, bool nesterov = false);

}  // namespace flaxpp::optax
