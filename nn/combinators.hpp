// Sequential, as flax.linen.Sequential: applies its layers in order. Module entries are named
// layers_0, layers_1, ... (their index in the list, as Flax's attribute adoption does); plain
// functions (e.g. nn::relu) are applied as they are and still take up an index.
//
//   nn::Sequential mlp{.layers = {nn::Dense{.features = 4}, nn::relu, nn::Dense{.features = 2}}};
//   // params: layers_0/{kernel,bias}, layers_2/{kernel,bias}
#pragma once

#include <vector>

#include "module.hpp"

namespace flaxpp::nn {

struct Sequential : Module<Sequential> {
  std::vector<AnyModule> layers;

  Array operator()(Scope& s, const Array& x) const;
};

}  // namespace flaxpp::nn
