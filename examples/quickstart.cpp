// The README's side-by-side example: a small model, init, apply, and one gradient step.
//
//   class MLP(nn.Module):                          struct MLP : nn::Module<MLP> {
//     @nn.compact                                    Array operator()(nn::Scope& s, Array x) const {
//     def __call__(self, x):                           x = nn::relu(s(nn::Dense{.features = 16}, x));
//       x = nn.relu(nn.Dense(16)(x))                   return s(nn::Dense{.features = 1}, x);
//       return nn.Dense(1)(x)                        }
//                                                  };
//   model = MLP()
//   x, y = jnp.ones((4, 3)), jnp.zeros((4, 1))
//   params = model.init(jax.random.key(0), x)
//   loss = lambda p: jnp.mean((model.apply(p, x) - y) ** 2)
//   value, grads = jax.value_and_grad(loss)(params)
//   params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
#include <iostream>

#include "nn/nn.hpp"

using namespace flaxpp;

struct MLP : nn::Module<MLP> {
  Array operator()(nn::Scope& s, Array x) const {
    x = nn::relu(s(nn::Dense{.features = 16}, x));
    return s(nn::Dense{.features = 1}, x);
  }
};

int main() {
  MLP model;
  Array x = jnp::ones({4, 3}), y = jnp::zeros({4, 1});
  Tree params = model.init(random::PRNGKey(0), x);
  auto loss = [&](const Tree& p) { return jnp::mean(jnp::square(model.apply(p, x) - y)); };
  auto [value, grads] = value_and_grad(loss)(params);
  params = tree_map([](const Array& p, const Array& g) { return p - 0.1f * g; }, params, grads);

  std::cout << "params: " << tree_shapes(params) << "\n"
            << "loss before: " << value.item<float>()
            << ", after one step: " << loss(params).item<float>() << "\n";
}
