// DenseGeneral (nn/linear.cpp) against Flax's docstring shapes, Flax's initialisation recipe
// (kernel_init on the flattened (in, out) matrix, then reshaped) derived here from the samplers,
// a float64 contraction written out in loops, and central differences. Dense and Embed are
// tested in layers_test.cpp.
#include <cmath>

#include <doctest/doctest.h>

#include "core/ops.hpp"
#include "core/random.hpp"
#include "nn/nn.hpp"
#include "testing.hpp"

using namespace flaxpp;
using namespace flaxpp::nn_testing;
namespace rnd = flaxpp::random;
namespace init = flaxpp::nn::initializers;

namespace {

// lecun_normal on a (fan_in, fan_out) matrix, from the sampler: truncated_normal(-2, 2) times
// float32(sqrt(float32(1 / fan_in)) / 0.87962566) (jax.nn.initializers.variance_scaling).
Array lecun_matrix(rnd::Key key, int64_t fan_in, int64_t fan_out) {
  Array t = rnd::truncated_normal(key, -2.f, 2.f, {fan_in, fan_out});
  const float c = std::sqrt(static_cast<float>(1.0 / static_cast<double>(fan_in))) /
                  static_cast<float>(.87962566103423978);
  Array r = t.copy();
  float* p = r.mutable_data<float>();
  for (int64_t i = 0; i < r.size(); ++i) p[i] = p[i] * c;
  return r;
}

// y[b..., f..., o...] = sum_c x[...] k[b..., c..., o...] + bias[b..., o...] in float64, by
// brute force over every index of x: the meaning of Flax's dot_general dimension numbers.
std::vector<double> dense_general_double(const Array& x, const Array& kernel, const Array* bias,
                                         const std::vector<size_t>& batch,
                                         const std::vector<size_t>& axes, const Shape& features) {
  auto xd = x.to_double(), kd = kernel.to_double();
  std::vector<double> bd = bias ? bias->to_double() : std::vector<double>{};
  const Shape& xs = x.shape();
  std::vector<size_t> free;
  for (size_t d = batch.size(); d < xs.size(); ++d)
    if (std::find(axes.begin(), axes.end(), d) == axes.end()) free.push_back(d);
  Shape out_shape;
  for (size_t b : batch) out_shape.push_back(xs[b]);
  for (size_t f : free) out_shape.push_back(xs[f]);
  int64_t nfeat = numel(features);
  for (int64_t f : features) out_shape.push_back(f);
  std::vector<double> y(static_cast<size_t>(numel(out_shape)), 0.0);
  for (int64_t i = 0; i < x.size(); ++i) {
    auto xi = unravel(i, xs);
    for (int64_t o = 0; o < nfeat; ++o) {
      auto oi = unravel(o, features);
      std::vector<int64_t> ki, yi;
      for (size_t b : batch) ki.push_back(xi[b]), yi.push_back(xi[b]);
      for (size_t a : axes) ki.push_back(xi[a]);
      for (size_t f : free) yi.push_back(xi[f]);
      ki.insert(ki.end(), oi.begin(), oi.end());
      yi.insert(yi.end(), oi.begin(), oi.end());
      y[static_cast<size_t>(ravel(yi, out_shape))] +=
          xd[static_cast<size_t>(i)] * kd[static_cast<size_t>(ravel(ki, kernel.shape()))];
    }
  }
  if (bias) {
    int64_t nb = 1;
    for (size_t b : batch) nb *= xs[b];
    int64_t per_batch = static_cast<int64_t>(y.size()) / nb;
    for (size_t j = 0; j < y.size(); ++j) {
      int64_t b = static_cast<int64_t>(j) / per_batch, o = static_cast<int64_t>(j) % nfeat;
      y[j] += bd[static_cast<size_t>(b * nfeat + o)];
    }
  }
  return y;
}

Shape param_shape(const Tree& vars, const std::string& path) {
  return vars.at(path).array().shape();
}

}  // namespace

TEST_CASE("DenseGeneral parameter shapes are Flax's docstring's") {
  // flax/linen/linear.py DenseGeneral docstring:
  //   DenseGeneral(features=(4, 5)) on ones((1, 3)) -> {'bias': (4, 5), 'kernel': (3, 4, 5)}
  //   DenseGeneral(features=(4, 5), axis=(1, -1)) on ones((1, 3, 6, 7)) -> kernel (3, 7, 4, 5)
  nn::DenseGeneral a{.features = {4, 5}};
  auto [ya, va] = a.init_with_output(rnd::PRNGKey(0), jnp::ones({1, 3}));
  CHECK(va.at("params").keys() == std::vector<std::string>{"kernel", "bias"});
  CHECK(param_shape(va, "params/kernel") == Shape{3, 4, 5});
  CHECK(param_shape(va, "params/bias") == Shape{4, 5});
  CHECK(ya.shape() == Shape{1, 4, 5});
  nn::DenseGeneral b{.features = {4, 5}, .axis = {1, -1}};
  auto [yb, vb] = b.init_with_output(rnd::PRNGKey(0), jnp::ones({1, 3, 6, 7}));
  CHECK(param_shape(vb, "params/kernel") == Shape{3, 7, 4, 5});
  CHECK(param_shape(vb, "params/bias") == Shape{4, 5});
  CHECK(yb.shape() == Shape{1, 6, 4, 5});
  // Axes are sorted, as Flax's _normalize_axes: (-1, 1) is (1, 3).
  nn::DenseGeneral c{.features = {2}, .axis = {-1, 1}};
  CHECK(param_shape(c.init(rnd::PRNGKey(0), jnp::ones({1, 3, 6, 7})), "params/kernel") ==
        Shape{3, 7, 2});
  // batch_dims: one kernel and bias per index of the leading axes.
  nn::DenseGeneral d{.features = {5}, .batch_dims = {0}};
  auto [yd, vd] = d.init_with_output(rnd::PRNGKey(0), jnp::ones({2, 3, 4}));
  CHECK(param_shape(vd, "params/kernel") == Shape{2, 4, 5});
  CHECK(param_shape(vd, "params/bias") == Shape{2, 5});
  CHECK(yd.shape() == Shape{2, 3, 5});
  nn::DenseGeneral e{.features = {3}, .use_bias = false};
  CHECK(e.init(rnd::PRNGKey(0), jnp::ones({2, 4})).at("params").keys() ==
        std::vector<std::string>{"kernel"});
}

TEST_CASE("DenseGeneral initial values: kernel_init on the flattened (in, out) matrix, reshaped") {
  // Flax's kernel_init_wrap calls kernel_init(rng, (prod(batch) * prod(contracted),
  // prod(features))) and reshapes. The key is the root scope's params counter 1 (bias: 2).
  const rnd::Key root = rnd::PRNGKey(0);
  const rnd::Key k1 = nn::derive_key(nn::Compat::current, root, {}, 1);
  {
    nn::DenseGeneral layer{.features = {2, 3}};
    Array kernel = layer.init(root, jnp::ones({5, 4})).at("params/kernel").array();
    CHECK(kernel.shape() == Shape{4, 2, 3});
    // fan_in 4 (the flattened matrix), not 8 (what variance_scaling gives the 3-d shape).
    CHECK(bit_equal(kernel, jnp::reshape(lecun_matrix(k1, 4, 6), {4, 2, 3})));
  }
  {
    nn::DenseGeneral layer{.features = {3}, .axis = {-2, -1}};
    Array kernel = layer.init(root, jnp::ones({2, 5, 4})).at("params/kernel").array();
    CHECK(bit_equal(kernel, jnp::reshape(lecun_matrix(k1, 20, 3), {5, 4, 3})));
  }
  {
    nn::DenseGeneral layer{.features = {3}, .batch_dims = {0}};
    Array kernel = layer.init(root, jnp::ones({2, 5, 4})).at("params/kernel").array();
    CHECK(bit_equal(kernel,
                    jnp::reshape(lecun_matrix(k1, 8, 3), {2, 4, 3})));  // batch folds into fan_in
  }
  // features = (n,) is Dense(n): same key, same numbers, same output.
  Array x = rnd::normal(rnd::PRNGKey(3), {3, 4});
  auto vg = nn::DenseGeneral{.features = {5}}.init(rnd::PRNGKey(7), x);
  auto vd = nn::Dense{.features = 5}.init(rnd::PRNGKey(7), x);
  CHECK(bit_equal(vg.at("params/kernel").array(), vd.at("params/kernel").array()));
  CHECK(bit_equal(vg.at("params/bias").array(), vd.at("params/bias").array()));
  // Under a nested path the key is the child's: kernel of `proj` = lecun(derive(K, {proj}, 1)).
  struct Wrap : nn::Module<Wrap> {
    Array operator()(nn::Scope& s, const Array& x) const {
      return s.call("proj", nn::DenseGeneral{.features = {2, 2}}, x);
    }
  };
  Array kw = Wrap{}.init(root, x).at("params/proj/kernel").array();
  CHECK(bit_equal(
      kw, jnp::reshape(lecun_matrix(nn::derive_key(nn::Compat::current, root, {"proj"}, 1), 4, 4),
                       {4, 2, 2})));
}

TEST_CASE("DenseGeneral outputs equal the float64 contraction") {
  struct Case {
    Shape x;
    std::vector<int64_t> features, axis, batch_dims;
    std::vector<size_t> batch_n, axes_n;
  };
  const std::vector<Case> cases = {
      {{3, 4}, {5}, {-1}, {}, {}, {1}},
      {{2, 3, 4}, {2, 3}, {-1}, {}, {}, {2}},
      {{2, 3, 4}, {3}, {0, 2}, {}, {}, {0, 2}},  // contracts a non-trailing axis
      {{2, 3, 4, 2}, {2, 2}, {-2, -1}, {}, {}, {2, 3}},
      {{2, 3, 4}, {3}, {-1}, {0}, {0}, {2}},  // a kernel per batch index
      {{2, 2, 3, 4}, {2, 3}, {-1}, {0, 1}, {0, 1}, {3}},
  };
  uint32_t seed = 10;
  for (const Case& c : cases) {
    nn::DenseGeneral layer{.features = c.features, .axis = c.axis, .batch_dims = c.batch_dims};
    Array x = rnd::normal(rnd::PRNGKey(seed++), c.x);
    Tree params = jitter(layer.init(rnd::PRNGKey(seed), x)["params"], seed + 1);
    seed += 2;
    Array y = layer.apply(Tree{{"params", params}}, x);
    Array kernel = params.at("kernel").array(), bias = params.at("bias").array();
    auto want = dense_general_double(x, kernel, &bias, c.batch_n, c.axes_n, Shape(c.features));
    // Sums of <= 16 products of O(1) float32 values: float32 rounding <= ~16 * 2^-24 * 4, so 2e-5.
    check_close(y, want, 2e-5);
  }
}

TEST_CASE("DenseGeneral with ones kernel and bias: each output is the contracted size plus 1") {
  nn::DenseGeneral layer{
      .features = {2, 3}, .axis = {-2, -1}, .kernel_init = init::ones, .bias_init = init::ones};
  auto [y, vars] = layer.init_with_output(rnd::PRNGKey(0), jnp::ones({2, 4, 5}));
  CHECK(y.shape() == Shape{2, 2, 3});
  for (double v : y.to_double()) CHECK(v == 21.0);
}

TEST_CASE(
    "gradients: DenseGeneral w.r.t. kernel, bias and input (contracting two axes, batch_dims)") {
  for (auto layer : {nn::DenseGeneral{.features = {2, 2}, .axis = {1, 2}},
                     nn::DenseGeneral{.features = {3}, .batch_dims = {0}}}) {
    Array x = rnd::normal(rnd::PRNGKey(1), {2, 3, 2});
    Tree params = jitter(layer.init(rnd::PRNGKey(0), x)["params"], 1);
    Shape out = layer.apply(Tree{{"params", params}}, x).shape();
    auto loss = loss_of(layer, out);
    check_param_grads(loss, params, x);
    check_input_grads(loss, params, x);
  }
}

TEST_CASE("DenseGeneral errors name the module, the field and the shape") {
  Array x = jnp::ones({2, 3});
  // Layers built outside the macros: designated initialisers' commas would split the arguments.
  auto fails = [](const nn::DenseGeneral& layer, const Array& in) {
    try {
      layer.init(rnd::PRNGKey(0), in);
    } catch (const nn::ModuleError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(fails({.features = {2}, .axis = {2}}, x) ==
        "<root> (DenseGeneral): axis (2,) is out of range for an input of shape (2,3)");
  CHECK(fails({.features = {2}, .axis = {1, -1}}, x) ==
        "<root> (DenseGeneral): axis (1, -1) names an axis twice for an input of shape (2,3)");
  CHECK(fails({.features = {2}, .batch_dims = {1}}, jnp::ones({2, 3, 4})) ==
        "<root> (DenseGeneral): batch_dims (1,) must be consecutive leading dimensions starting "
        "from 0");
  CHECK(fails({.features = {2}, .axis = {0}, .batch_dims = {0}}, x) ==
        "<root> (DenseGeneral): axis (0,) and batch_dims (0,) overlap");
  CHECK(fails({}, x) == "<root> (DenseGeneral): features must list at least one output dimension");
  CHECK(fails({.features = {2, 0}}, x) ==
        "<root> (DenseGeneral): features must be positive, got (2, 0)");
  CHECK(fails({.features = {2}}, jnp::ones({2, 3}, DType::int32)) ==
        "<root> (DenseGeneral): expected a float32 input, got int32 (2,3)");
  // A kernel of the wrong shape in the variables is caught by Scope::param.
  nn::DenseGeneral layer{.features = {2}};
  auto vars = layer.init(rnd::PRNGKey(0), x);
  CHECK_THROWS_WITH_AS(
      layer.apply(vars, jnp::ones({2, 4})),
      "<root> (DenseGeneral): parameter 'kernel' has shape (3,2) in the variables; the module "
      "expects (4,2)",
      nn::ModuleError);
}
