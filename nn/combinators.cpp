#include "nn/combinators.hpp"

namespace flaxpp::nn {

Array Sequential::operator()(Scope& s, const Array& x) const {
  if (layers.empty()) s.fail("Sequential has no layers");
  Array y = x;
  for (size_t i = 0; i < layers.size(); ++i)
    y = layers[i].is_function() ? layers[i].call_function(y) : s.call("layers", i, layers[i], y);
  return y;
}

}  // namespace flaxpp::nn
