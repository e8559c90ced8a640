#include "optax/alias.hpp"

#include <vector>

#include "optax/clipping.hpp"
#include "optax/factorized.hpp"
#include "optax/transform.hpp"

namespace flaxpp::optax {

GradientTransformation sgd(LearningRate lr, std::optional<double> momentum, bool nesterov) {
  if (momentum) return chain({trace(*momentum, nesterov), scale_by_learning_rate(lr)});
  return chain({scale_by_learning_rate(lr)});
}

GradientTransformation adam(LearningRate lr, double b1, double b2, double eps, double eps_root,
                            bool nesterov) {
  return chain({scale_by_adam(b1, b2, eps, eps_root, nesterov), scale_by_learning_rate(lr)});
}

GradientTransformation nadam(LearningRate lr, double b1, double b2, double eps, double eps_root) {
  return adam(std::move(lr), b1, b2, eps, eps_root, /*nesterov=*/true);
}

GradientTransformation adamw(LearningRate lr, double b1, double b2, double eps, double weight_decay,
                             Mask mask) {
  return chain({scale_by_adam(b1, b2, eps), add_decayed_weights(weight_decay, std::move(mask)),
                scale_by_learning_rate(lr)});
}

GradientTransformation rmsprop(LearningRate lr, double decay, double eps, double initial_scale,
                               bool eps_in_sqrt, bool centered, std::optional<double> momentum,
                               bool nesterov, bool bias_correction) {
  return chain({centered ? scale_by_stddev(decay, eps, initial_scale, eps_in_sqrt, bias_correction)
                         : scale_by_rms(decay, eps, initial_scale, eps_in_sqrt, bias_correction),
                scale_by_learning_rate(lr), momentum ? trace(*momentum, nesterov) : identity()});
}

GradientTransformation adagrad(LearningRate lr, double initial_accumulator_value, double eps) {
  return chain({scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(lr)});
}

GradientTransformation adafactor(std::optional<LearningRate> lr, int64_t min_dim_size_to_factor,
                                 double decay_rate, int64_t decay_offset,
                                 bool multiply_by_parameter_scale,
                                 std::optional<double> clipping_threshold,
                                 std::optional<double> momentum,
                                 std::optional<double> weight_decay_rate, double eps, bool factored,
                                 Mask weight_decay_mask) {
  std::vector<GradientTransformation> tx{
      scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps)};
  if (clipping_threshold) tx.push_back(clip_by_block_rms(*clipping_threshold));
  if (lr) tx.push_back(scale_by_learning_rate(*lr, /*flip_sign=*/false));
  if (multiply_by_parameter_scale) tx.push_back(scale_by_param_block_rms());
  if (momentum) tx.push_back(ema(*momentum, /*debias=*/false));
  if (weight_decay_rate)
    tx.push_back(add_decayed_weights(*weight_decay_rate, std::move(weight_decay_mask)));
  tx.push_back(scale(-1));
  return chain(std::move(tx));
}

GradientTransformation lion(LearningRate lr, double b1, double b2, double weight_decay, Mask mask) {
  return chain({scale_by_lion(b1, b2), add_decayed_weights(weight_decay, std::move(mask)),
                scale_by_learning_rate(lr)});
}

GradientTransformation lamb(LearningRate lr, double b1, double b2, double eps, double eps_root,
                            double weight_decay, Mask mask) {
  return chain({scale_by_adam(b1, b2, eps, eps_root),
                add_decayed_weights(weight_decay, std::move(mask)), scale_by_trust_ratio(),
                scale_by_learning_rate(lr)});
}

GradientTransformation adabelief(LearningRate lr, double b1, double b2, double eps, double eps_root,
                                 std::optional<double> weight_decay, Mask weight_decay_mask,
                                 bool nesterov) {
  std::vector<GradientTransformation> tx{scale_by_belief(b1, b2, eps, eps_root, nesterov)};
  if (weight_decay) tx.push_back(add_decayed_weights(*weight_decay, std::move(weight_decay_mask)));
  tx.push_back(scale_by_learning_rate(lr));
  return chain(std::move(tx));
}

GradientTransformation radam(LearningRate lr, double b1, double b2, double eps, double eps_root,
                             double threshold, bool nesterov) {
  return chain(
      {scale_by_radam(b1, b2, eps, eps_root, threshold, nesterov), scale_by_learning_rate(lr)});
}

}  // namespace flaxpp::optax
