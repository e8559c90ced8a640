// LayerNorm, BatchNorm, GroupNorm, InstanceNorm and RMSNorm, as flax.linen's normalization
// layers.
//
//   Array y = s(nn::LayerNorm{}, x);   // params: scale (d,) ones [counter 1], bias (d,) zeros [2]
//   Array z = s(nn::BatchNorm{.momentum = 0.9}, x, /*use_running_average=*/!train);
//   // batch_stats: mean (C,) zeros, var (C,) ones; params scale, bias (C,). Training updates the
//   // running averages, so apply needs nn::Mutable{"batch_stats"} and returns {y, updates}.
//   Array g = s(nn::GroupNorm{.num_groups = 8}, x);        // x (N, ..., C), C % 8 == 0
//   Array r = s(nn::RMSNorm{}, x);                         // params: scale (d,) only
//
// All share Flax's _compute_stats / _normalize: over the reduction axes, mean = E[x] and
// var = max(0, E[x^2] - mean^2) (use_fast_variance; otherwise E[(x - mean)^2]); RMSNorm takes
// mean = 0, var = E[x^2]. Then y = (x - mean) * (rsqrt(var + epsilon) * scale) + bias, with
// scale and bias shaped like the feature axes.
//   LayerNorm  last axis (one fused pass; mean/var clipping per Compat, see below).
//   BatchNorm  reduces every axis but `axis`. With use_running_average (a field or the call's
//              argument, exactly one) it normalises with batch_stats; otherwise with the batch's
//              statistics and, except during init, sets mean <- momentum * mean + (1 -
//              momentum) * batch_mean and likewise var (the biased batch variance).
//   GroupNorm  channels (last axis) split into num_groups groups (or groups of group_size; set
//              num_groups = std::nullopt then); statistics per group over reduction_axes, by
//              default every axis but the first (the batch).
//   InstanceNorm  per example and feature: reduces every axis but 0 and feature_axes.
//   RMSNorm    reduction_axes and feature_axes default to the last axis.
//
// Errors (ModuleError with the module path): non-float input, axes out of range,
// use_running_average set on both or neither, batch_stats not mutable in training, num_groups /
// group_size both or neither set or not dividing the channels, reduction_axes without the last
// axis (GroupNorm).
#pragma once

#include <optional>
#include <vector>

#include "module.hpp"

namespace flaxpp::nn {

struct LayerNorm : Module<LayerNorm> {
  double epsilon = 1e-6;
  bool use_bias = true;
  bool use_scale = true;
  Initializer scale_init = initializers::ones;
  Initializer bias_init = initializers::zeros;

  Array operator()(Scope& s, const Array& x) const;
};

struct BatchNorm : Module<BatchNorm> {
  std::optional<bool> use_running_average = std::nullopt;
  int64_t axis = -1;  // the feature axis
  double momentum = 0.99;
  double epsilon = 1e-5;
  bool use_bias = true;
  bool use_scale = true;
  Initializer bias_init = initializers::zeros;
  Initializer scale_init = initializers::ones;
  bool use_fast_variance = true;

  Array operator()(Scope& s, const Array& x,
                   std::optional<bool> use_running_average = std::nullopt) const;
};

struct GroupNorm : Module<GroupNorm> {
  std::optional<int64_t> num_groups = 32;
  std::optional<int64_t> group_size = std::nullopt;
  double epsilon = 1e-6;
  bool use_bias = true;
  bool use_scale = true;
  Initializer bias_init = initializers::zeros;
  Initializer scale_init = initializers::ones;
  std::optional<std::vector<int64_t>> reduction_axes = std::nullopt;  // must include the last
  bool use_fast_variance = true;

  Array operator()(Scope& s, const Array& x) const;
};

// Statistics per example and feature, over every other axis but the first (the batch).
struct InstanceNorm : Module<InstanceNorm> {
  double epsilon = 1e-6;
  bool use_bias = true;
  bool use_scale = true;
  Initializer bias_init = initializers::zeros;
  Initializer scale_init = initializers::ones;
  std::vector<int64_t> feature_axes = {-1};  // may not include axis 0
  bool use_fast_variance = true;

  Array operator()(Scope& s, const Array& x) const;
};

struct RMSNorm : Module<RMSNorm> {
  double epsilon = 1e-6;
  bool use_scale = true;
  Initializer scale_init = initializers::ones;
  std::vector<int64_t> reduction_axes = {-1};
  std::vector<int64_t> feature_axes = {-1};

  Array operator()(Scope& s, const Array& x) const;
};

}  // namespace flaxpp::nn
