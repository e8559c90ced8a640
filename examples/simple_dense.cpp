// Flax's SimpleDense: a module that declares its own parameters with `param`, then a linear
// regression trained by gradient descent with value_and_grad over the parameter Tree. Both cells
// come from Flax's 2021 "Flax basics" notebook (docs/notebooks/flax_basics.ipynb, flax 0.3.x);
// the program runs under the 2021 profile (flax 0.3.4 keys, JAX 0.2 random bits), so every
// number it prints can be checked against the one the notebook printed, shown beside it.
//
//   class SimpleDense(nn.Module):
//     features: int
//     kernel_init: Callable = nn.initializers.lecun_normal()
//     bias_init: Callable = nn.initializers.zeros
//
//     @nn.compact
//     def __call__(self, inputs):
//       kernel = self.param('kernel', self.kernel_init, (inputs.shape[-1], self.features))
//       y = lax.dot_general(inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ())))
//       bias = self.param('bias', self.bias_init, (self.features,))
//       return y + bias
#include <cstdio>
#include <iostream>

#include "nn/nn.hpp"

using namespace flaxpp;
namespace rnd = flaxpp::random;

struct SimpleDense : nn::Module<SimpleDense> {
  int64_t features = 0;
  nn::Initializer kernel_init = nn::initializers::lecun_normal();
  nn::Initializer bias_init = nn::initializers::zeros;

  Array operator()(nn::Scope& s, const Array& inputs) const {
    Array kernel = s.param("kernel", kernel_init, {inputs.shape().back(), features});
    Array y = jnp::matmul(inputs, kernel);  // contracts the last axis of inputs with axis 0
    Array bias = s.param("bias", bias_init, {features});
    return y + bias;
  }
};

int main() {
  // The 2021 notebook: flax 0.3.4 parameter keys and JAX's original (non-partitionable) bits.
  nn::set_default_compat(nn::Compat::v2021);
  rnd::set_bits_mode(rnd::BitsMode::legacy);

  // ---- the SimpleDense cell ----
  auto keys = rnd::split(rnd::PRNGKey(0));
  rnd::Key key1 = keys[0], key2 = keys[1];
  Array x = rnd::uniform(key1, {4, 4});
  SimpleDense model{.features = 3};
  Tree params = model.init(key2, x);
  Array y = model.apply(params, x);
  std::cout << "initialized parameters: " << params << "\n"
            << "kernel:\n"
            << params.at("params/kernel").array() << "\n"
            << "  notebook: [[ 0.6503669 ,  0.8678979 ,  0.46042678], ..., [-0.8243032 ,  "
               "0.4150194 ,  0.19405058]]\n"
            << "output:\n"
            << y << "\n"
            << "  notebook: [[ 0.50355184  1.8548559  -0.4270196 ] ... [ 0.52648634  1.2928859   "
               "0.10089307]]\n\n";

  // ---- the linear regression cell: 20 samples, 10 inputs, 5 outputs ----
  const int64_t n_samples = 20, x_dim = 10, y_dim = 5;
  auto k = rnd::split(rnd::PRNGKey(0));
  Array W = rnd::normal(k[0], {x_dim, y_dim}), b = rnd::normal(k[1], {y_dim});
  Tree true_params{{"params", Tree{{"bias", b}, {"kernel", W}}}};
  auto ks = rnd::split(k[0]);
  Array x_samples = rnd::normal(ks[0], {n_samples, x_dim});
  // As the notebook ran when its outputs were saved: y from the dummy input x (later corrected to
  // x_samples), so every target is the same vector plus noise.
  Array x_dummy = rnd::normal(key1, {x_dim});
  Array y_samples = jnp::matmul(x_dummy, W) + b + 0.1f * rnd::normal(ks[1], {n_samples, y_dim});

  SimpleDense dense{.features = y_dim};
  Tree variables = dense.init(key2, x_dummy);  // the notebook's nn.Dense(5).init(key2, x)
  // mean over samples of ||y - f(x)||^2 / 2 (the notebook vmaps this per sample).
  auto mse = [&](const Tree& vars) {
    Array d = y_samples - dense.apply(vars, x_samples);
    return jnp::mean(jnp::sum(d * d, {-1}) / 2.f);
  };
  const float alpha = 0.3f;  // gradient step size
  auto step = [&] {
    auto [loss, grads] = value_and_grad(mse)(variables);
    variables =
        tree_map([&](const Array& p, const Array& g) { return p - alpha * g; }, variables, grads);
    return loss.item<float>();
  };
  const double notebook[] = {23.618902,   0.30728564,  0.06495677,  0.025215296,
                             0.015619493, 0.012849321, 0.011984843, 0.011705536,
                             0.011613827, 0.011583473, 0.011573391};
  std::printf("Loss for \"true\" W,b:  %-12.8g (notebook: 29.070158)\n",
              mse(true_params).item<float>());
  for (int i = 0; i <= 100; ++i) {
    float loss = step();
    if (i % 10 == 0)
      std::printf("Loss step %3d:  %-12.8g (notebook: %.8g)\n", i, loss, notebook[i / 10]);
  }
  // The notebook's next cell takes 101 more steps of the same update (flax.optim.GradientDescent).
  float first = step(), last = first;
  for (int i = 1; i <= 100; ++i) last = step();
  std::printf("101 more steps: %.8g -> %.8g (notebook: 0.011572863 -> 0.011568357)\n", first, last);
  std::cout << "trained bias: " << variables.at("params/bias").array() << "\n"
            << "  notebook:   [-3.023082 ,  0.5307182,  3.7256303,  1.4638226, -3.2100437]\n";
}
