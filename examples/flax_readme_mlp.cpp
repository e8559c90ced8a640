// Flax's README example, ported line for line: an MLP built from a list of layer sizes,
// initialised from a key, applied to a batch, then summarised with tabulate.
//
//   class MLP(nn.Module):                                  struct MLP : nn::Module<MLP> {
//     features: Sequence[int]                                std::vector<int64_t> features;
//     @nn.compact                                            Array operator()(nn::Scope& s, Array x) const {
//     def __call__(self, x):                                   for (size_t i = 0; i + 1 < features.size(); ++i)
//       for feat in self.features[:-1]:                          x = nn::relu(s(nn::Dense{.features = features[i]}, x));
//         x = nn.relu(nn.Dense(feat)(x))                       return s(nn::Dense{.features = features.back()}, x);
//       x = nn.Dense(self.features[-1])(x)                   }
//       return x                                           };
//
//   model = MLP([12, 8, 4])
//   batch = jnp.ones((32, 10))
//   variables = model.init(jax.random.key(0), batch)
//   output = model.apply(variables, batch)
#include <iostream>

#include "nn/nn.hpp"

using namespace flaxpp;

struct MLP : nn::Module<MLP> {
  std::vector<int64_t> features;
  Array operator()(nn::Scope& s, Array x) const {
    for (size_t i = 0; i + 1 < features.size(); ++i)
      x = nn::relu(s(nn::Dense{.features = features[i]}, x));
    return s(nn::Dense{.features = features.back()}, x);
  }
};

int main() {
  MLP model{.features = {12, 8, 4}};
  Array batch = jnp::ones({32, 10});
  Tree variables = model.init(random::PRNGKey(0), batch);
  Array output = model.apply(variables, batch);

  // jax.tree_util.tree_map(jnp.shape, variables)
  std::cout << "param shapes: " << tree_shapes(variables) << "\n";
  std::cout << "output shape: " << tree_shapes(Tree(output)) << "\n";
  std::cout << "output[0]:    " << jnp::index(output, 0) << "\n\n";
  // model.tabulate(jax.random.key(0), batch)
  std::cout << model.tabulate(random::PRNGKey(0), batch);
}
