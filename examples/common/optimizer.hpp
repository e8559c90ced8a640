// The examples' optimizer from the flags: --optimizer, --schedule, --accumulate (cli.hpp's
// OptimizerFlags), always after clip_by_global_norm(--clip).
//
//   auto opt = examples::make_optimizer(cfg.optim, cfg.run.steps,
//                                       {.b2 = 0.99, .end_lr = 0.1, .decay_mask = mask});
//   auto state = training::TrainState::create(params, opt.tx, key);
//   csv row: opt.lr_at(state.step)
//
// The defaults (adamw, warmup_cosine, accumulate 1) build exactly the chain the examples always
// used: clip_by_global_norm -> adamw(warmup_cosine_decay_schedule(0, lr, warmup, steps,
// end_lr * lr), 0.9, b2, 1e-8, weight_decay, mask), so default runs keep their numbers.
// --accumulate K wraps the chain in MultiSteps(K): K consecutive batches make one update of their
// mean gradient (an effective batch of K x --batch); --steps still counts batches, and the
// schedule spans the steps / K updates.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../../optax/optax.hpp"
#include "cli.hpp"
#include "distributed.hpp"  // UsageError

namespace examples {

struct OptimizerDefaults {
  double b2 = 0.999;               // Adam's second-moment decay
  double end_lr = 0.01;            // the schedules' final value, as a fraction of --lr
  flaxpp::optax::Mask decay_mask;  // which parameters get weight decay
};

struct Optimizer {
  flaxpp::optax::GradientTransformation tx;
  flaxpp::optax::Schedule schedule;  // of the update count
  int64_t accumulate = 1;
  double lr_at(int64_t step) const { return schedule(step / accumulate); }
};

// The learning-rate schedule `name` over `updates` updates, peaking at lr.
inline flaxpp::optax::Schedule make_schedule(const std::string& name, double lr, int64_t warmup,
                                             int64_t updates, double end_fraction) {
  namespace optax = flaxpp::optax;
  const double end = lr * end_fraction;
  warmup = std::min(warmup, updates / 5);
  if (name == "warmup_cosine")
    return optax::warmup_cosine_decay_schedule(0.0, lr, warmup, updates, end);
  if (name == "constant") return optax::constant_schedule(lr);
  if (name == "cosine") return optax::cosine_decay_schedule(lr, updates, end_fraction);
  if (name == "linear") return optax::linear_schedule(lr, end, updates);
  if (name == "exponential")  // lr * end_fraction at the last update
    return optax::exponential_decay(lr, std::max<int64_t>(updates, 1), end_fraction);
  if (name == "piecewise")  // x 0.1 at half and at three quarters of the run
    return optax::piecewise_constant_schedule(lr, {{updates / 2, 0.1}, {updates * 3 / 4, 0.1}});
  if (name == "polynomial") return optax::polynomial_schedule(lr, end, 2.0, updates);
  if (name == "warmup_exponential")
    return optax::warmup_exponential_decay_schedule(
        0.0, lr, warmup, std::max<int64_t>(updates - warmup, 1), end_fraction, 0, false, end);
  if (name == "onecycle") return optax::cosine_onecycle_schedule(std::max<int64_t>(updates, 1), lr);
  throw UsageError("--schedule " + name + ": not one of the schedules (see --help)");
}

inline Optimizer make_optimizer(const OptimizerFlags& f, int64_t steps,
                                const OptimizerDefaults& d) {
  namespace optax = flaxpp::optax;
  if (f.accumulate < 1) throw UsageError("--accumulate must be >= 1");
  Optimizer o;
  o.accumulate = f.accumulate;
  const int64_t updates = std::max<int64_t>(steps / f.accumulate, 1);
  o.schedule = make_schedule(f.schedule, f.lr, f.warmup, updates, d.end_lr);
  const optax::LearningRate lr = o.schedule;
  const double wd = f.weight_decay;
  const std::string& n = f.optimizer;
  optax::GradientTransformation opt;
  if (n == "adamw")
    opt = optax::adamw(lr, 0.9, d.b2, 1e-8, wd, d.decay_mask);
  else if (n == "adam")
    opt = optax::adam(lr, 0.9, d.b2);
  else if (n == "nadam")
    opt = optax::nadam(lr, 0.9, d.b2);
  else if (n == "radam")
    opt = optax::radam(lr, 0.9, d.b2);
  else if (n == "sgd")
    opt = optax::sgd(lr, 0.9);
  else if (n == "rmsprop")
    opt = optax::rmsprop(lr);
  else if (n == "adagrad")
    opt = optax::adagrad(lr);
  else if (n == "adafactor")
    opt = optax::adafactor(lr);
  else if (n == "lion")
    opt = optax::lion(lr, 0.9, 0.99, wd, d.decay_mask);
  else if (n == "lamb")
    opt = optax::lamb(lr, 0.9, d.b2, 1e-6, 0.0, wd, d.decay_mask);
  else if (n == "adabelief")
    opt = optax::adabelief(lr, 0.9, d.b2, 1e-16, 1e-16, wd, d.decay_mask);
  else
    throw UsageError("--optimizer " + n + ": not one of the optimizers (see --help)");
  o.tx = optax::chain({optax::clip_by_global_norm(f.clip), opt});
  if (f.accumulate > 1) o.tx = optax::MultiSteps(o.tx, f.accumulate).gradient_transformation();
  return o;
}

}  // namespace examples
