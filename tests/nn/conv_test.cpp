// nn/conv.cpp: Conv against Flax's docstring shapes, Flax's kernel initialisation derived from
// the sampler, a float64 convolution written from lax.conv_general_dilated's definition (each
// padding mode, strides, input and kernel dilation, feature groups, 1-3 spatial dims, batch
// axes), central differences; the pools against a float64 window reduction.
#include <cmath>
#include <limits>

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

Array normal(uint32_t seed, const Shape& shape) { return rnd::normal(rnd::PRNGKey(seed), shape); }

struct ConvSpec {
  std::vector<int64_t> kernel, strides, in_dil, k_dil;
  std::vector<std::pair<int64_t, int64_t>> pads;  // on the dilated input (zeros)
  bool circular = false;                          // wrap pads on the raw input instead
  int64_t groups = 1;
};

// lax.conv_general_dilated (NHWC / HWIO) in float64 on x (B, S..., C), kernel (k..., C/g, F):
// the input dilated by in_dil (zeros between entries), padded, then every output position o
// sums x_p[o * stride + k * k_dil, c] * kernel[k, c, f] over the window and the group's c.
std::vector<double> conv_double(const Array& x, const Array& kernel, const Array* bias,
                                const ConvSpec& c, Shape& out_shape) {
  size_t d = c.kernel.size();
  auto xd = x.to_double(), kd = kernel.to_double();
  int64_t B = x.shape()[0], C = x.shape().back(), F = kernel.shape().back(), cg = C / c.groups;
  std::vector<int64_t> P(d), O(d), n(d);
  for (size_t i = 0; i < d; ++i) {
    n[i] = x.shape()[1 + i];
    P[i] = c.circular ? n[i] + c.pads[i].first + c.pads[i].second
                      : (n[i] - 1) * c.in_dil[i] + 1 + c.pads[i].first + c.pads[i].second;
    O[i] = (P[i] - ((c.kernel[i] - 1) * c.k_dil[i] + 1)) / c.strides[i] + 1;
  }
  out_shape = Shape{B};
  for (int64_t o : O) out_shape.push_back(o);
  out_shape.push_back(F);
  Shape kwin(c.kernel), oshape(O);
  std::vector<double> y(static_cast<size_t>(numel(out_shape)), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t oi = 0; oi < numel(oshape); ++oi) {
      auto o = unravel(oi, oshape);
      for (int64_t f = 0; f < F; ++f) {
        int64_t g = f / (F / c.groups);
        double acc = bias ? bias->to_double()[static_cast<size_t>(f)] : 0.0;
        for (int64_t ki = 0; ki < numel(kwin); ++ki) {
          auto k = unravel(ki, kwin);
          std::vector<int64_t> src(d);
          bool zero = false;
          for (size_t i = 0; i < d; ++i) {
            int64_t p = o[i] * c.strides[i] + k[i] * c.k_dil[i] - c.pads[i].first;
            if (c.circular) {
              src[i] = ((p % n[i]) + n[i]) % n[i];
            } else if (p < 0 || p % c.in_dil[i] != 0 || p / c.in_dil[i] >= n[i]) {
              zero = true;
            } else {
              src[i] = p / c.in_dil[i];
            }
          }
          if (zero) continue;
          for (int64_t cc = 0; cc < cg; ++cc) {
            std::vector<int64_t> xi{b};
            xi.insert(xi.end(), src.begin(), src.end());
            xi.push_back(g * cg + cc);
            std::vector<int64_t> wi = k;
            wi.push_back(cc);
            wi.push_back(f);
            acc += xd[static_cast<size_t>(ravel(xi, x.shape()))] *
                   kd[static_cast<size_t>(ravel(wi, kernel.shape()))];
          }
        }
        std::vector<int64_t> yi{b};
        yi.insert(yi.end(), o.begin(), o.end());
        yi.push_back(f);
        y[static_cast<size_t>(ravel(yi, out_shape))] = acc;
      }
    }
  return y;
}

Array lecun_sample(rnd::Key key, const Shape& shape, int64_t fan_in) {
  Array r = rnd::truncated_normal(key, -2.f, 2.f, shape).copy();
  const float c = std::sqrt(static_cast<float>(1.0 / static_cast<double>(fan_in))) /
                  static_cast<float>(.87962566103423978);
  float* p = r.mutable_data<float>();
  for (int64_t i = 0; i < r.size(); ++i) p[i] = p[i] * c;
  return r;
}

// A window reduction over (B, S..., C) in float64: `pad` fills outside the input; count of
// real entries returned too (for avg_pool without padding).
std::vector<double> pool_double(const Array& x, const std::vector<int64_t>& window,
                                const std::vector<int64_t>& strides,
                                const std::vector<std::pair<int64_t, int64_t>>& pads,
                                const std::string& op, bool count_include_pad = true) {
  size_t d = window.size();
  auto xd = x.to_double();
  int64_t B = x.shape()[0], C = x.shape().back();
  std::vector<int64_t> O(d);
  for (size_t i = 0; i < d; ++i)
    O[i] = (x.shape()[1 + i] + pads[i].first + pads[i].second - window[i]) / strides[i] + 1;
  Shape oshape(O), wshape(window);
  std::vector<double> y;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t oi = 0; oi < numel(oshape); ++oi)
      for (int64_t c = 0; c < C; ++c) {
        auto o = unravel(oi, oshape);
        double acc = op == "max" ? -INFINITY : op == "min" ? INFINITY : 0.0;
        int64_t real = 0;
        for (int64_t wi = 0; wi < numel(wshape); ++wi) {
          auto w = unravel(wi, wshape);
          std::vector<int64_t> xi{b};
          bool outside = false;
          for (size_t i = 0; i < d; ++i) {
            int64_t p = o[i] * strides[i] + w[i] - pads[i].first;
            outside = outside || p < 0 || p >= x.shape()[1 + i];
            xi.push_back(p);
          }
          xi.push_back(c);
          if (outside) continue;  // -inf / +inf / 0: neutral for each reduction
          double v = xd[static_cast<size_t>(ravel(xi, x.shape()))];
          acc = op == "max" ? std::max(acc, v) : op == "min" ? std::min(acc, v) : acc + v;
          ++real;
        }
        if (op == "avg") acc /= count_include_pad ? static_cast<double>(numel(wshape)) : real;
        y.push_back(acc);
      }
  return y;
}

}  // namespace

// ---- Conv ----------------------------------------------------------------------------------

TEST_CASE("Conv parameter shapes are Flax's docstring's; kernel_init on the full kernel shape") {
  // flax/linen/linear.py Conv docstring:
  //   Conv(4, (3,), padding='VALID') on ones((1, 8, 3)) -> kernel (3, 3, 4), bias (4,),
  //   out (1, 6, 4)
  //   Conv(4, (3, 3), strides=2, padding='CIRCULAR') on ones((1, 8, 3)) -> kernel (3, 3, 3, 4),
  //   out (1, 4, 4) (no batch axis: (1, 8) is the spatial shape)
  const rnd::Key root = rnd::PRNGKey(0);
  nn::Conv a{.features = 4, .kernel_size = {3}, .padding = "VALID"};
  auto [ya, va] = a.init_with_output(root, jnp::ones({1, 8, 3}));
  CHECK(va.at("params").keys() == std::vector<std::string>{"kernel", "bias"});
  CHECK(va.at("params/kernel").array().shape() == Shape{3, 3, 4});
  CHECK(va.at("params/bias").array().shape() == Shape{4});
  CHECK(ya.shape() == Shape{1, 6, 4});
  nn::Conv b{.features = 4, .kernel_size = {3, 3}, .strides = {2}, .padding = "CIRCULAR"};
  auto [yb, vb] = b.init_with_output(root, jnp::ones({1, 8, 3}));
  CHECK(vb.at("params/kernel").array().shape() == Shape{3, 3, 3, 4});
  CHECK(yb.shape() == Shape{1, 4, 4});
  // lecun_normal on (3, 3, 3, 4): fan_in = 3 (in) * 9 (receptive field) = 27.
  CHECK(
      bit_equal(vb.at("params/kernel").array(),
                lecun_sample(nn::derive_key(nn::Compat::current, root, {}, 1), {3, 3, 3, 4}, 27)));
  // Groups: kernel (3, 3, C / g, F).
  nn::Conv g{.features = 6, .kernel_size = {3, 3}, .feature_group_count = 2};
  CHECK(g.init(root, jnp::ones({1, 5, 5, 4})).at("params/kernel").array().shape() ==
        Shape{3, 3, 2, 6});
}

TEST_CASE("Conv equals lax.conv_general_dilated's definition in float64") {
  struct Case {
    Shape x;
    nn::Conv conv;
    ConvSpec ref;
  };
  using P = std::vector<std::pair<int64_t, int64_t>>;
  const std::vector<Case> cases = {
      // SAME, stride 1: pads (1, 1).
      {{2, 5, 6, 3},
       {.features = 4, .kernel_size = {3, 3}},
       {{3, 3}, {1, 1}, {1, 1}, {1, 1}, P{{1, 1}, {1, 1}}}},
      // SAME, stride 2 on 5 and 6: out 3, 3; pads (1, 1) and (0, 1).
      {{1, 5, 6, 2},
       {.features = 3, .kernel_size = {3, 3}, .strides = {2}},
       {{3, 3}, {2, 2}, {1, 1}, {1, 1}, P{{1, 1}, {0, 1}}}},
      // VALID with kernel dilation 2: effective 5 x 3.
      {{1, 7, 6, 2},
       {.features = 2, .kernel_size = {3, 2}, .padding = "VALID", .kernel_dilation = {2}},
       {{3, 2}, {1, 1}, {1, 1}, {2, 2}, P{{0, 0}, {0, 0}}}},
      // Explicit pads on the input dilated by 2 (a transposed convolution's form), stride 1.
      {{1, 4, 3, 2},
       {.features = 2, .kernel_size = {2, 3}, .padding = {{1, 2}, {0, 1}}, .input_dilation = {2}},
       {{2, 3}, {1, 1}, {2, 2}, {1, 1}, P{{1, 2}, {0, 1}}}},
      // CIRCULAR, stride 2: wrap pads (1, 1).
      {{2, 6, 5, 3},
       {.features = 2, .kernel_size = {3, 3}, .strides = {2}, .padding = "CIRCULAR"},
       {{3, 3}, {2, 2}, {1, 1}, {1, 1}, P{{1, 1}, {1, 1}}, true}},
      // CAUSAL 1-d with kernel dilation 2: left pad 4.
      {{2, 7, 3},
       {.features = 2, .kernel_size = {3}, .padding = "CAUSAL", .kernel_dilation = {2}},
       {{3}, {1}, {1}, {2}, P{{4, 0}}}},
      // Feature groups.
      {{1, 5, 5, 4},
       {.features = 6, .kernel_size = {3, 3}, .padding = 1, .feature_group_count = 2},
       {{3, 3}, {1, 1}, {1, 1}, {1, 1}, P{{1, 1}, {1, 1}}, false, 2}},
      // 3 spatial dims, strides (1, 2, 1), VALID.
      {{1, 4, 5, 3, 2},
       {.features = 2, .kernel_size = {2, 3, 2}, .strides = {1, 2, 1}, .padding = "VALID"},
       {{2, 3, 2}, {1, 2, 1}, {1, 1, 1}, {1, 1, 1}, P{{0, 0}, {0, 0}, {0, 0}}}},
  };
  uint32_t seed = 100;
  for (const Case& c : cases) {
    Array x = normal(seed, c.x);
    Tree params = jitter(c.conv.init(rnd::PRNGKey(seed + 1), x)["params"], seed + 2);
    seed += 3;
    Array y = c.conv.apply(Tree{{"params", params}}, x);
    Array kernel = params.at("kernel").array(), bias = params.at("bias").array();
    Shape want_shape;
    auto want = conv_double(x, kernel, &bias, c.ref, want_shape);
    CHECK(y.shape() == want_shape);
    // Sums of <= 3*3*3*2 = 54 products of O(1) float32 values: rounding < 1e-5.
    check_close(y, want, 2e-5);
  }
}

TEST_CASE("Conv batch axes: none (added and removed) or several (flattened and restored)") {
  nn::Conv conv{.features = 3, .kernel_size = {3}};
  Array x = normal(7, {2, 3, 6, 2});  // batch (2, 3), one spatial dim of 6, 2 features
  Tree vars = conv.init(rnd::PRNGKey(0), x);
  Array y = conv.apply(vars, x);
  CHECK(y.shape() == Shape{2, 3, 6, 3});
  Array flat = conv.apply(vars, jnp::reshape(x, {6, 6, 2}));
  CHECK(bit_equal(jnp::reshape(y, {6, 6, 3}), flat));
  Array single = conv.apply(vars, jnp::index(jnp::reshape(x, {6, 6, 2}), 4));
  CHECK(single.shape() == Shape{6, 3});
  CHECK(bit_equal(single, jnp::index(flat, 4)));
}

TEST_CASE("Conv mask multiplies the kernel (Flax's masked convolution)") {
  Array m = jnp::tril(jnp::ones({3, 3}));
  Array mask = jnp::broadcast_to(jnp::reshape(m, {3, 3, 1}), {3, 3, 4}).copy();
  nn::Conv masked{.features = 4, .kernel_size = {3}, .padding = "VALID", .mask = mask};
  Array x = normal(8, {1, 8, 3});
  Tree vars = masked.init(rnd::PRNGKey(0), x);
  Tree product = vars.set("params/kernel", vars.at("params/kernel").array() * mask);
  nn::Conv plain{.features = 4, .kernel_size = {3}, .padding = "VALID"};
  CHECK(bit_equal(masked.apply(vars, x), plain.apply(product, x)));
}

TEST_CASE("gradients: Conv w.r.t. kernel, bias and input (stride 2, groups, SAME)") {
  nn::Conv conv{.features = 4, .kernel_size = {2, 3}, .strides = {2, 1}, .feature_group_count = 2};
  Array x = normal(9, {1, 4, 3, 2});
  Tree params = jitter(conv.init(rnd::PRNGKey(0), x)["params"], 9);
  Shape out = conv.apply(Tree{{"params", params}}, x).shape();
  auto loss = loss_of(conv, out);
  check_param_grads(loss, params, x);
  check_input_grads(loss, params, x);
}

TEST_CASE("Conv errors name the module, the shapes and the fields") {
  auto fails = [](const nn::Conv& conv, const Array& in) {
    try {
      conv.init(rnd::PRNGKey(0), in);
    } catch (const nn::ModuleError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  Array x = jnp::ones({1, 4, 4, 3});
  CHECK(fails({.features = 2, .kernel_size = {5, 5}, .padding = "VALID"}, x) ==
        "<root> (Conv): the window (dilated: 5 on spatial dim 0) is larger than the padded "
        "input's spatial shape (4, 4)");
  CHECK(fails({.features = 2, .kernel_size = {3, 3}, .feature_group_count = 2}, x) ==
        "<root> (Conv): feature_group_count 2 must divide the input features (3) and features (2)");
  CHECK(fails({.features = 2, .kernel_size = {3, 3, 3}}, jnp::ones({4, 4, 3})) ==
        "<root> (Conv): expected a float32 input (batch..., 3 spatial dims, features) for "
        "kernel_size (3, 3, 3), got float32 (4,4,3)");
  CHECK(fails({.features = 2, .kernel_size = {3, 3}, .input_dilation = {2}}, x) ==
        "<root> (Conv): string padding \"SAME\" is not implemented with input_dilation > 1 (as in "
        "lax); give (low, high) pairs");
  CHECK(fails({.features = 2, .kernel_size = {3, 3}, .strides = {1, 2, 1}}, x) ==
        "<root> (Conv): strides (1, 2, 1) has 3 entries for 2 spatial dims");
  CHECK(fails({.features = 2, .kernel_size = {3, 3}, .padding = "REFLECT"}, x) ==
        "<root> (Conv): padding must be \"SAME\", \"VALID\", \"CIRCULAR\", \"CAUSAL\", an int or "
        "(low, high) pairs, got \"REFLECT\"");
  CHECK(fails({.features = 2, .kernel_size = {3, 3}, .padding = "CAUSAL"}, x) ==
        "<root> (Conv): CAUSAL padding is only implemented for 1-d convolutions");
  CHECK(
      fails({.features = 2, .kernel_size = {3}, .mask = jnp::ones({3, 3})}, jnp::ones({1, 5, 3})) ==
      "<root> (Conv): mask needs to have the same shape as the kernel: mask (3,3), kernel (3,3,2)");
}

TEST_CASE("ConvTranspose: Flax's docstring shapes and lax.conv_transpose's definition in float64") {
  // flax docstring: ConvTranspose(4, (3,), padding='VALID') on ones((1, 8, 3)) -> kernel (3, 3, 4),
  // bias (4,), output (1, 10, 4).
  nn::ConvTranspose a{.features = 4, .kernel_size = {3}, .padding = "VALID"};
  auto [ya, va] = a.init_with_output(rnd::PRNGKey(0), jnp::ones({1, 8, 3}));
  CHECK(va.at("params").keys() == std::vector<std::string>{"kernel", "bias"});
  CHECK(va.at("params/kernel").array().shape() == Shape{3, 3, 4});
  CHECK(ya.shape() == Shape{1, 10, 4});
  // = a convolution of the input dilated by the strides, with lax's transpose pads:
  // SAME k=3, s=2: total 3, low ceil(3/2) = 2 -> (2, 1), output = in * stride;
  // VALID k=3, s=2: total 4, low 2 -> (2, 2), output (in - 1) * s + k.
  using P = std::vector<std::pair<int64_t, int64_t>>;
  struct Case {
    nn::ConvTranspose conv;
    ConvSpec ref;
    Shape out;
  };
  const std::vector<Case> cases = {
      {{.features = 3, .kernel_size = {3, 3}, .strides = {2}},
       {{3, 3}, {1, 1}, {2, 2}, {1, 1}, P{{2, 1}, {2, 1}}},
       {2, 8, 6, 3}},
      {{.features = 3, .kernel_size = {3, 3}, .strides = {2}, .padding = "VALID"},
       {{3, 3}, {1, 1}, {2, 2}, {1, 1}, P{{2, 2}, {2, 2}}},
       {2, 9, 7, 3}},
      // SAME k=2, s=2: s > k - 1, so low k - 1 = 1, total 2 -> (1, 1).
      {{.features = 2, .kernel_size = {2, 2}, .strides = {2}},
       {{2, 2}, {1, 1}, {2, 2}, {1, 1}, P{{1, 1}, {1, 1}}},
       {2, 8, 6, 2}},
      // Explicit pads, kernel dilation 2 (dilated kernel 5): used as the conv's pads.
      {{.features = 2,
        .kernel_size = {3, 3},
        .strides = {2, 1},
        .padding = {{1, 0}, {2, 2}},
        .kernel_dilation = {2}},
       {{3, 3}, {1, 1}, {2, 1}, {2, 2}, P{{1, 0}, {2, 2}}},
       {2, 4, 3, 2}},
  };
  uint32_t seed = 200;
  for (const Case& c : cases) {
    Array x = normal(seed, {2, 4, 3, 2});
    Tree params = jitter(c.conv.init(rnd::PRNGKey(seed + 1), x)["params"], seed + 2);
    seed += 3;
    Array y = c.conv.apply(Tree{{"params", params}}, x);
    Array kernel = params.at("kernel").array(), bias = params.at("bias").array();
    Shape want_shape;
    auto want = conv_double(x, kernel, &bias, c.ref, want_shape);
    CHECK(want_shape == c.out);
    CHECK(y.shape() == want_shape);
    check_close(y, want, 2e-5);  // <= 18-term sums of O(1) float32 products
  }
  nn::ConvTranspose circ{.features = 2, .kernel_size = {3}, .padding = "CIRCULAR"};
  CHECK_THROWS_WITH_AS(
      circ.init(rnd::PRNGKey(0), jnp::ones({1, 4, 2})),
      "<root> (ConvTranspose): padding must be \"SAME\", \"VALID\", an int or (low, "
      "high) pairs, got \"CIRCULAR\"",
      nn::ModuleError);
}

// ---- pools ---------------------------------------------------------------------------------

TEST_CASE("max_pool, min_pool and avg_pool equal the float64 window reduction") {
  Array x = normal(20, {2, 5, 6, 3});
  using P = std::vector<std::pair<int64_t, int64_t>>;
  // VALID 2x2 stride 2: out (2, 3).
  check_close(nn::max_pool(x, {2, 2}, {2, 2}),
              pool_double(x, {2, 2}, {2, 2}, P{{0, 0}, {0, 0}}, "max"), 0);
  check_close(nn::min_pool(x, {2, 2}, {2, 2}),
              pool_double(x, {2, 2}, {2, 2}, P{{0, 0}, {0, 0}}, "min"), 0);
  check_close(nn::avg_pool(x, {2, 2}, {2, 2}),
              pool_double(x, {2, 2}, {2, 2}, P{{0, 0}, {0, 0}}, "avg"), 1e-6);
  // Default strides are 1s.
  check_close(nn::avg_pool(x, {3, 2}), pool_double(x, {3, 2}, {1, 1}, P{{0, 0}, {0, 0}}, "avg"),
              1e-6);
  // SAME with stride 2 on 5 and 6: pads (1, 1) and (0, 1) for a 3x3 window (lax.padtype_to_pads).
  check_close(nn::max_pool(x, {3, 3}, {2, 2}, "SAME"),
              pool_double(x, {3, 3}, {2, 2}, P{{1, 1}, {0, 1}}, "max"), 0);
  // Explicit pads; avg_pool with and without the pads counted.
  P pads{{1, 0}, {2, 1}};
  check_close(nn::avg_pool(x, {2, 3}, {1, 2}, pads), pool_double(x, {2, 3}, {1, 2}, pads, "avg"),
              1e-6);
  check_close(nn::avg_pool(x, {2, 3}, {1, 2}, pads, false),
              pool_double(x, {2, 3}, {1, 2}, pads, "avg", false), 1e-6);
  // No batch axis: pooled as a batch of one.
  Array x0 = jnp::index(x, 1);
  Array y0 = nn::max_pool(x0, {2, 2}, {2, 2});
  CHECK(y0.shape() == Shape{2, 3, 3});
  CHECK(bit_equal(y0, jnp::index(nn::max_pool(x, {2, 2}, {2, 2}), 1)));
  // 1-d, several batch axes (batch..., L, C).
  Array x1 = normal(21, {2, 2, 7, 2});
  CHECK(nn::avg_pool(x1, {3}, {2}).shape() == Shape{2, 2, 3, 2});
}

TEST_CASE("pool gradients: avg_pool and max_pool (no ties) against central differences") {
  Array w = normal(30, {1, 2, 2, 2});
  auto avg = [&](const Tree&, const Array& x) {
    return jnp::sum(w * nn::avg_pool(x, {2, 2}, {2, 2}, "SAME", false));
  };
  Array wm = normal(32, {1, 1, 2, 2});
  auto mx = [&](const Tree&, const Array& x) {
    return jnp::sum(wm * nn::max_pool(x, {2, 2}, {2, 2}));
  };
  Array x = normal(31, {1, 3, 4, 2});  // continuous values: no ties in the max windows
  check_input_grads(avg, Tree{}, x);
  check_input_grads(mx, Tree{}, jnp::slice(x, 1, 0, 2).copy());
}

TEST_CASE("pool errors name the function and the shapes") {
  Array x = jnp::ones({1, 3, 3, 2});
  CHECK_THROWS_WITH_AS(
      nn::max_pool(x, {4, 4}),
      "max_pool: the window (dilated: 4 on spatial dim 0) is larger than the padded "
      "input's spatial shape (3, 3) (input (1,3,3,2), window_shape (4, 4))",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      nn::avg_pool(x, {2, 2}, {2}),
      "avg_pool: strides (2,) must have one entry per window dim (input (1,3,3,2), "
      "window_shape (2, 2))",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(nn::max_pool(x, {2, 2}, {}, "CIRCULAR"),
                       "max_pool: padding must be \"SAME\", \"VALID\" or (low, high) pairs, got "
                       "\"CIRCULAR\" (input (1,3,3,2), window_shape (2, 2))",
                       std::invalid_argument);
}

// ---- Flax's MNIST CNN (examples/mnist) -----------------------------------------------------

TEST_CASE(
    "Flax's MNIST CNN: Conv 32, relu, avg_pool, Conv 64, relu, avg_pool, Dense 256, Dense 10") {
  struct CNN : nn::Module<CNN> {
    Array operator()(nn::Scope& s, const Array& x0) const {
      Array x = nn::relu(s(nn::Conv{.features = 32, .kernel_size = {3, 3}}, x0));
      x = nn::avg_pool(x, {2, 2}, {2, 2});
      x = nn::relu(s(nn::Conv{.features = 64, .kernel_size = {3, 3}}, x));
      x = nn::avg_pool(x, {2, 2}, {2, 2});
      x = jnp::reshape(x, {x.shape()[0], -1});
      x = nn::relu(s(nn::Dense{.features = 256}, x));
      return s(nn::Dense{.features = 10}, x);
    }
  };
  auto [y, vars] = CNN{}.init_with_output(rnd::PRNGKey(0), jnp::ones({2, 28, 28, 1}));
  CHECK(y.shape() == Shape{2, 10});
  CHECK(vars.at("params").keys() ==
        std::vector<std::string>{"Conv_0", "Conv_1", "Dense_0", "Dense_1"});
  CHECK(vars.at("params/Conv_0/kernel").array().shape() == Shape{3, 3, 1, 32});
  CHECK(vars.at("params/Conv_1/kernel").array().shape() == Shape{3, 3, 32, 64});
  CHECK(vars.at("params/Dense_0/kernel").array().shape() == Shape{7 * 7 * 64, 256});
  CHECK(param_count(vars) ==
        (9 * 32 + 32) + (9 * 32 * 64 + 64) + (3136 * 256 + 256) + (256 * 10 + 10));
}
