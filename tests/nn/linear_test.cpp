// DenseGeneral (nn/linear.cpp) against Flax's docstring shapes, Flax's initialisation recipe
// (kernel_init on the flattened (in, out) matrix, then reshaped) derived here from the samplers,
// a float64 contraction written out in loops, and central differences. Dense and Embed are
// tested in layers_test.cpp.
#include <cmath>
#include <map>
#include <string>

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

// ---- einsum and Einsum ---------------------------------------------------------------------

namespace {

// Brute-force float64 einsum over every assignment of the labels (letters only).
std::vector<double> einsum_double(const std::string& eq, const Array& a, const Array& b) {
  std::string ta = eq.substr(0, eq.find(',')),
              tb = eq.substr(eq.find(',') + 1, eq.find("->") - eq.find(',') - 1);
  std::string out = eq.substr(eq.find("->") + 2);
  std::map<char, int64_t> size;
  for (size_t d = 0; d < ta.size(); ++d) size[ta[d]] = a.shape()[d];
  for (size_t d = 0; d < tb.size(); ++d) size[tb[d]] = b.shape()[d];
  std::string labels;
  for (auto [c, n] : size) labels += c;
  Shape all, sa = a.shape(), sb = b.shape(), so;
  for (char c : labels) all.push_back(size[c]);
  for (char c : out) so.push_back(size[c]);
  auto ad = a.to_double(), bd = b.to_double();
  std::vector<double> y(static_cast<size_t>(numel(so)), 0.0);
  for (int64_t f = 0; f < numel(all); ++f) {
    auto idx = unravel(f, all);
    auto pick = [&](const std::string& t) {
      std::vector<int64_t> r;
      for (char c : t) r.push_back(idx[labels.find(c)]);
      return r;
    };
    y[static_cast<size_t>(ravel(pick(out), so))] +=
        ad[static_cast<size_t>(ravel(pick(ta), sa))] * bd[static_cast<size_t>(ravel(pick(tb), sb))];
  }
  return y;
}

// lecun_normal of an n-d kernel from the sampler, with the fan_in JAX computes for it.
Array lecun_sample(rnd::Key key, const Shape& shape, int64_t fan_in) {
  Array r = rnd::truncated_normal(key, -2.f, 2.f, shape).copy();
  const float c = std::sqrt(static_cast<float>(1.0 / static_cast<double>(fan_in))) /
                  static_cast<float>(.87962566103423978);
  float* p = r.mutable_data<float>();
  for (int64_t i = 0; i < r.size(); ++i) p[i] = p[i] * c;
  return r;
}

}  // namespace

TEST_CASE("einsum of two operands equals the float64 sum over all labels") {
  struct Case {
    std::string eq, ref_eq;  // ref_eq: the same with "..." spelled out in letters
    Shape a, b;
  };
  const std::vector<Case> cases = {
      {"ij,jk->ik", "ij,jk->ik", {3, 4}, {4, 2}},
      {"bij,bjk->bik", "bij,bjk->bik", {2, 3, 4}, {2, 4, 5}},
      {"abc,cde->abde", "abc,cde->abde", {3, 4, 5}, {5, 2, 3}},
      {"ij,kj->ki", "ij,kj->ki", {3, 4}, {2, 4}},           // transposed operand and output
      {"ij,jk->k", "ij,jk->k", {3, 4}, {4, 2}},             // i summed out of a alone
      {"i,j->ij", "i,j->ij", {3}, {4}},                     // outer product
      {"...c,cd->...d", "xyc,cd->xyd", {2, 3, 4}, {4, 5}},  // ellipsis
      {"bqhd,bkhd->bhqk", "bqhd,bkhd->bhqk", {2, 3, 2, 4}, {2, 5, 2, 4}},  // attention's
      {" ij , jk -> ik ", "ij,jk->ik", {2, 2}, {2, 2}},                    // spaces ignored
  };
  uint32_t seed = 60;
  for (const Case& c : cases) {
    Array a = rnd::normal(rnd::PRNGKey(seed++), c.a), b = rnd::normal(rnd::PRNGKey(seed++), c.b);
    std::string ref;
    for (char ch : c.ref_eq)
      if (ch != ' ') ref += ch;
    check_close(nn::einsum(c.eq, a, b), einsum_double(ref, a, b), 1e-5);  // <= 20-term sums of O(1)
  }
  Array a = jnp::ones({2, 3}), b = jnp::ones({3, 4});
  CHECK_THROWS_WITH_AS(
      nn::einsum("ij,jk", a, b),
      "einsum 'ij,jk' on (2,3) and (3,4): the equation must be explicit and include \"->\"",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(nn::einsum("ij,ik->jk", a, b),
                       "einsum 'ij,ik->jk' on (2,3) and (3,4): label 'i' has sizes 2 and 3",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      nn::einsum("ii,jk->ik", jnp::ones({3, 3}), b),
      "einsum 'ii,jk->ik' on (3,3) and (3,4): repeated labels in one operand (diagonals) are not "
      "supported",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(nn::einsum("ijk,jk->ik", a, b),
                       "einsum 'ijk,jk->ik' on (2,3) and (3,4): operand 0 has 3 labels for rank 2",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(nn::einsum("ij,jk->iz", a, b),
                       "einsum 'ij,jk->iz' on (2,3) and (3,4): output label 'z' is in no operand",
                       std::invalid_argument);
  // Differentiable in both operands.
  Array w = rnd::normal(rnd::PRNGKey(70), {2, 4});
  auto f = [&](const Tree& t, const Array& x) {
    return jnp::sum(w * nn::einsum("ij,jk->ik", x, t.at("b").array()));
  };
  Tree tb{{"b", rnd::normal(rnd::PRNGKey(71), {3, 4})}};
  check_input_grads(f, tb, rnd::normal(rnd::PRNGKey(72), {2, 3}));
  check_param_grads(f, tb, rnd::normal(rnd::PRNGKey(72), {2, 3}));
}

TEST_CASE("Einsum module: Flax's docstring shapes, kernel_init on the kernel's own shape, bias") {
  // flax/linen/linear.py Einsum docstring: Einsum((5, 6, 7), 'abc,cde->abde') on ones((3, 4, 5))
  // -> {'params': {'bias': (6, 7), 'kernel': (5, 6, 7)}}.
  nn::Einsum layer{.shape = {5, 6, 7}, .einsum_str = "abc,cde->abde"};
  const rnd::Key root = rnd::PRNGKey(0);
  Array x = rnd::normal(rnd::PRNGKey(1), {3, 4, 5});
  auto [y, vars] = layer.init_with_output(root, x);
  CHECK(vars.at("params").keys() == std::vector<std::string>{"kernel", "bias"});
  CHECK(vars.at("params/kernel").array().shape() == Shape{5, 6, 7});
  CHECK(vars.at("params/bias").array().shape() == Shape{6, 7});
  CHECK(y.shape() == Shape{3, 4, 6, 7});
  // lecun_normal on (5, 6, 7): fan_in = shape[-2] * receptive field (5) = 30, no flattening.
  CHECK(bit_equal(vars.at("params/kernel").array(),
                  lecun_sample(nn::derive_key(nn::Compat::current, root, {}, 1), {5, 6, 7}, 30)));
  // Output = einsum + bias broadcast as (1, 1, 6, 7), against float64.
  Tree params = jitter(vars["params"], 3);
  Array yj = layer.apply(Tree{{"params", params}}, x);
  auto want = einsum_double("abc,cde->abde", x, params.at("kernel").array());
  auto bd = params.at("bias").array().to_double();
  for (size_t i = 0; i < want.size(); ++i) want[i] += bd[i % 42];
  check_close(yj, want, 1e-5);
  // The equation at the call instead; an ellipsis; a kernel axis absent from the output.
  nn::Einsum late{.shape = {5, 2}};
  CHECK(late.init(root, x, std::optional<std::string>("...c,cd->...d"))
            .at("params/bias")
            .array()
            .shape() == Shape{2});
  nn::Einsum reduce{.shape = {5, 2}, .einsum_str = "abc,cd->ab"};
  CHECK(reduce.init(root, x).at("params/bias").array().shape() == Shape{});
  // Gradients.
  nn::Einsum small{.shape = {3, 2}, .einsum_str = "bc,cd->bd"};
  Array xs = rnd::normal(rnd::PRNGKey(4), {2, 3});
  Tree ps = jitter(small.init(root, xs)["params"], 5);
  auto loss = loss_of(small, {2, 2});
  check_param_grads(loss, ps, xs);
  check_input_grads(loss, ps, xs);
  // Errors.
  CHECK_THROWS_WITH_AS(layer.init(root, x, std::optional<std::string>("abc,cde->abde")),
                       "<root> (Einsum): einsum_str is set both on the module and at the call",
                       nn::ModuleError);
  CHECK_THROWS_WITH_AS(late.init(root, x),
                       "<root> (Einsum): einsum_str must be set on the module or at the call",
                       nn::ModuleError);
  nn::Einsum three{.shape = {5, 2}, .einsum_str = "abc,cd,d->ab"};
  CHECK_THROWS_WITH_AS(
      three.init(root, x),
      "<root> (Einsum): einsum_str 'abc,cd,d->ab' must have exactly two operands (one comma)",
      nn::ModuleError);
  nn::Einsum wrong{.shape = {4, 2}, .einsum_str = "abc,cd->abd"};
  CHECK_THROWS_WITH_AS(
      wrong.init(root, x),
      "<root> (Einsum): einsum 'abc,cd->abd' on (3,4,5) and (4,2): label 'c' has sizes 5 and 4",
      nn::ModuleError);
}
