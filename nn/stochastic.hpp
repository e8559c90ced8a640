// Dropout, as flax.linen.Dropout.
//
//   Array y = s(nn::Dropout{.rate = 0.1}, x, /*deterministic=*/!train);
//   model.apply(variables, x, nn::Rngs{{"dropout", key}});   // the `dropout` stream
//
// Keeps each element with probability 1 - rate (bernoulli from make_rng("dropout") in the
// Dropout's own scope) and scales kept ones by 1 / (1 - rate). broadcast_dims share one mask
// entry along those axes. Identity when deterministic or rate == 0; zeros when rate == 1.
// `deterministic` is set on the struct or at the call, exactly one of them (Flax's merge_param).
#pragma once

#include <optional>
#include <vector>

#include "module.hpp"

namespace flaxpp::nn {

struct Dropout : Module<Dropout> {
  double rate = 0.0;
  std::vector<int64_t> broadcast_dims = {};
  std::optional<bool> deterministic = std::nullopt;

  Array operator()(Scope& s, const Array& x,
                   std::optional<bool> deterministic = std::nullopt) const;
};

}  // namespace flaxpp::nn
