// nn/attention.cpp: dot_product_attention(_weights) and MultiHeadDotProductAttention against a
// float64 derivation written here, Flax's mask helpers against their definitions, the parameter
// tree and initial values against Flax's recipe (DenseGeneral on the flattened kernel, keys of
// the query/key/value/out scopes), dropout against the bernoulli mask drawn from the same key,
// central-difference gradients, and decoding with the cache against the full causal forward.
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

// Dot-product attention in float64 for q (B, Q, H, D), k (B, K, H, D), v (B, K, H, Dv), with an
// optional bias and boolean mask given as functions of (b, h, i, j). Masked logits become
// float32's lowest value, as Flax's, so a fully masked row is uniform.
struct Ref {
  std::vector<double> weights;  // (B, H, Q, K)
  std::vector<double> out;      // (B, Q, H, Dv)
};
Ref attention_double(const Array& q, const Array& k, const Array& v,
                     const std::function<double(int64_t, int64_t, int64_t, int64_t)>& bias,
                     const std::function<bool(int64_t, int64_t, int64_t, int64_t)>& keep) {
  const int64_t B = q.shape()[0], Q = q.shape()[1], H = q.shape()[2], D = q.shape()[3];
  const int64_t K = k.shape()[1], Dv = v.shape()[3];
  auto qd = q.to_double(), kd = k.to_double(), vd = v.to_double();
  Ref r{std::vector<double>(static_cast<size_t>(B * H * Q * K)),
        std::vector<double>(static_cast<size_t>(B * Q * H * Dv))};
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Q; ++i) {
        std::vector<double> logit(static_cast<size_t>(K));
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < K; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += qd[static_cast<size_t>(((b * Q + i) * H + h) * D + d)] *
                   kd[static_cast<size_t>(((b * K + j) * H + h) * D + d)];
          double l = dot / std::sqrt(static_cast<double>(D)) + (bias ? bias(b, h, i, j) : 0.0);
          if (keep && !keep(b, h, i, j)) l = std::numeric_limits<float>::lowest();
          logit[static_cast<size_t>(j)] = l;
          mx = std::max(mx, l);
        }
        double z = 0;
        for (double& l : logit) z += (l = std::exp(l - mx));
        for (int64_t j = 0; j < K; ++j) {
          double w = logit[static_cast<size_t>(j)] / z;
          r.weights[static_cast<size_t>(((b * H + h) * Q + i) * K + j)] = w;
          for (int64_t d = 0; d < Dv; ++d)
            r.out[static_cast<size_t>(((b * Q + i) * H + h) * Dv + d)] +=
                w * vd[static_cast<size_t>(((b * K + j) * H + h) * Dv + d)];
        }
      }
  return r;
}

Array normal(uint32_t seed, const Shape& shape) { return rnd::normal(rnd::PRNGKey(seed), shape); }

// lecun_normal on the flattened (fan_in, fan_out) matrix, from the sampler (see linear_test).
Array lecun_matrix(rnd::Key key, int64_t fan_in, int64_t fan_out) {
  Array r = rnd::truncated_normal(key, -2.f, 2.f, {fan_in, fan_out}).copy();
  const float c = std::sqrt(static_cast<float>(1.0 / static_cast<double>(fan_in))) /
                  static_cast<float>(.87962566103423978);
  float* p = r.mutable_data<float>();
  for (int64_t i = 0; i < r.size(); ++i) p[i] = p[i] * c;
  return r;
}

// x (B, L, F) @ kernel (F, H, D) + bias (H, D) in float64 -> (B, L, H, D) flattened.
std::vector<double> project_double(const Array& x, const Array& kernel, const Array& bias) {
  auto xd = x.to_double(), kd = kernel.to_double(), bd = bias.to_double();
  int64_t rows = x.size() / x.shape().back(), F = x.shape().back(), HD = kernel.size() / F;
  std::vector<double> y(static_cast<size_t>(rows * HD));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < HD; ++o) {
      double acc = bd[static_cast<size_t>(o)];
      for (int64_t f = 0; f < F; ++f)
        acc += xd[static_cast<size_t>(r * F + f)] * kd[static_cast<size_t>(f * HD + o)];
      y[static_cast<size_t>(r * HD + o)] = acc;
    }
  return y;
}

Array from_double(const Shape& shape, const std::vector<double>& v) {
  return Array::from(shape, std::vector<float>(v.begin(), v.end()));
}

}  // namespace

// ---- dot_product_attention -----------------------------------------------------------------

TEST_CASE("dot_product_attention equals softmax(q k / sqrt(d) + bias) v in float64") {
  Array q = normal(1, {2, 3, 2, 4}), k = normal(2, {2, 5, 2, 4}), v = normal(3, {2, 5, 2, 3});
  Array w = nn::dot_product_attention_weights(q, k);
  CHECK(w.shape() == Shape{2, 2, 3, 5});
  Ref ref = attention_double(q, k, v, nullptr, nullptr);
  // Logits O(3), sums of 4 products: float32 rounding of weights and outputs stays below 1e-6
  // relative; 2e-6 absolute on values of magnitude <= ~3.
  check_close(w, ref.weights, 2e-6);
  Array y = nn::dot_product_attention(q, k, v);
  CHECK(y.shape() == Shape{2, 3, 2, 3});
  check_close(y, ref.out, 4e-6);

  // bias broadcast from (H, 1, K); mask (B, 1, Q, K) with some entries off.
  Array bias = normal(4, {2, 1, 5});
  std::vector<float> m(2 * 3 * 5);
  for (size_t i = 0; i < m.size(); ++i) m[i] = (i % 3 == 1) ? 0.f : 1.f;
  Array mask = Array::from({2, 1, 3, 5}, m);
  auto bd = bias.to_double();
  Ref ref2 = attention_double(
      q, k, v,
      [&](int64_t, int64_t h, int64_t, int64_t j) { return bd[static_cast<size_t>(h * 5 + j)]; },
      [&](int64_t b, int64_t, int64_t i, int64_t j) {
        return m[static_cast<size_t>((b * 3 + i) * 5 + j)] != 0.f;
      });
  check_close(nn::dot_product_attention_weights(q, k, {.bias = bias, .mask = mask}), ref2.weights,
              2e-6);
  check_close(nn::dot_product_attention(q, k, v, {.bias = bias, .mask = mask}), ref2.out, 4e-6);
  // Unbatched (length, heads, depth) inputs work too.
  Array yu = nn::dot_product_attention(jnp::index(q, 0), jnp::index(k, 0), jnp::index(v, 0));
  CHECK(yu.shape() == Shape{3, 2, 3});
  check_close(yu, std::vector<double>(ref.out.begin(), ref.out.begin() + 18), 4e-6);
}

TEST_CASE("mask semantics: masked weights are exactly 0, a fully masked row is uniform") {
  Array q = normal(5, {1, 2, 1, 3}), k = normal(6, {1, 4, 1, 3});
  // Row 0 keeps keys {0, 2}; row 1 keeps none.
  Array mask =
      Array::from_bool({1, 1, 2, 4}, {true, false, true, false, false, false, false, false});
  Array w = nn::dot_product_attention_weights(q, k, {.mask = mask});
  auto wd = w.to_double();
  CHECK(wd[1] == 0.0);
  CHECK(wd[3] == 0.0);
  CHECK(std::fabs(wd[0] + wd[2] - 1.0) < 1e-6);
  for (int j = 4; j < 8; ++j)
    CHECK(wd[static_cast<size_t>(j)] == 0.25);  // all logits equal float32 min
  // A float mask means "nonzero keeps", as jnp.where does.
  Array fmask = jnp::astype(mask, DType::float32) * 3.f;
  CHECK(bit_equal(nn::dot_product_attention_weights(q, k, {.mask = fmask}), w));
}

TEST_CASE("make_attention_mask, make_causal_mask and combine_masks follow Flax's definitions") {
  // Padding mask: query/key token ids > 0, pairwise multiply -> (B, 1, Lq, Lk) float32.
  Array qids = Array::from({2, 3}, std::vector<int32_t>{5, 7, 0, 1, 0, 0});
  Array kids = Array::from({2, 2}, std::vector<int32_t>{3, 0, 0, 9});
  Array pad = nn::make_attention_mask(jnp::greater(qids, Array(0)), jnp::greater(kids, Array(0)));
  CHECK(pad.shape() == Shape{2, 1, 3, 2});
  CHECK(pad.dtype() == DType::float32);
  CHECK(pad.to_float() == std::vector<float>{1, 0, 1, 0, 0, 0, /**/ 0, 1, 0, 0, 0, 0});
  // pairwise_fn and extra_batch_dims: (1, 1, B, 1, Lq, Lk).
  Array ge = nn::make_attention_mask(qids, kids, jnp::greater_equal, 2, DType::bool_);
  CHECK(ge.shape() == Shape{1, 1, 2, 1, 3, 2});
  CHECK(ge.dtype() == DType::bool_);
  CHECK(ge.to_float() == std::vector<float>{1, 1, 1, 1, 0, 1, /**/ 1, 0, 1, 0, 1, 0});
  // Causal: mask[..., i, j] = i >= j.
  Array causal = nn::make_causal_mask(jnp::ones({2, 4}));
  CHECK(causal.shape() == Shape{2, 1, 4, 4});
  auto c = causal.to_float();
  for (int b = 0; b < 2; ++b)
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j)
        CHECK(c[static_cast<size_t>((b * 4 + i) * 4 + j)] == (i >= j ? 1.f : 0.f));
  CHECK(nn::make_causal_mask(jnp::ones({3}), 1).shape() == Shape{1, 1, 3, 3});
  // combine_masks: logical and of the given masks, None when none are given.
  CHECK(!nn::combine_masks({std::nullopt, std::nullopt}).has_value());
  // With a causal mask of the same shape: pad AND (i >= j).
  Array causal32 = nn::make_causal_mask(jnp::ones({2, 3}));  // (2, 1, 3, 3)
  Array pad33 = nn::make_attention_mask(jnp::greater(qids, Array(0)), jnp::greater(qids, Array(0)));
  Array combined = *nn::combine_masks({pad33, std::nullopt, causal32});
  auto pv = pad33.to_float(), cv = causal32.to_float(), got = combined.to_float();
  for (size_t n = 0; n < got.size(); ++n) CHECK(got[n] == ((pv[n] != 0 && cv[n] != 0) ? 1.f : 0.f));
  Array a = Array::from_bool({1, 4}, {true, true, false, false}),
        b = Array::from_bool({1, 4}, {true, false, true, false});
  CHECK(nn::combine_masks({a, b})->to_float() == std::vector<float>{1, 0, 0, 0});
  CHECK(nn::combine_masks({a}, DType::bool_)->dtype() == DType::bool_);
}

TEST_CASE("attention dropout: weights * keep / keep_prob with bernoulli(dropout_rng, 1 - rate)") {
  Array q = normal(7, {2, 3, 2, 4}), k = normal(8, {2, 5, 2, 4});
  Array w = nn::dot_product_attention_weights(q, k);
  const rnd::Key key = rnd::PRNGKey(11);
  for (bool broadcast : {true, false}) {
    Array wd = nn::dot_product_attention_weights(
        q, k, {.broadcast_dropout = broadcast, .dropout_rng = key, .dropout_rate = 0.4});
    // Flax: keep = bernoulli(rng, 0.6, (1, 1, Q, K)) when broadcast, else the weights' shape.
    Shape ks = broadcast ? Shape{1, 1, 3, 5} : w.shape();
    Array keep = rnd::bernoulli(key, 0.6f, ks);
    const float mult = 1.f / 0.6f;  // float32(1) / float32(0.6), then times the weight
    auto kv = keep.to_float();
    auto wv = w.to_float(), got = wd.to_float();
    int dropped = 0;
    for (size_t n = 0; n < wv.size(); ++n) {
      size_t ki = broadcast ? n % 15 : n;
      float want = kv[ki] != 0.f ? wv[n] * mult : 0.f;
      CHECK(got[n] == want);
      dropped += kv[ki] == 0.f;
    }
    CHECK(dropped > 0);
  }
  // deterministic, or rate 0, is no dropout and needs no rng.
  CHECK(bit_equal(
      nn::dot_product_attention_weights(q, k, {.dropout_rate = 0.4, .deterministic = true}), w));
  CHECK_THROWS_WITH_AS(nn::dot_product_attention_weights(q, k, {.dropout_rate = 0.4}),
                       "dot_product_attention_weights: dropout_rate > 0 and deterministic = false "
                       "need a dropout_rng",
                       std::invalid_argument);
}

TEST_CASE("dot_product_attention errors name the function and the shapes") {
  Array q = jnp::ones({2, 3, 2, 4});
  CHECK_THROWS_WITH_AS(
      nn::dot_product_attention_weights(q, jnp::ones({2, 3, 2, 5})),
      "dot_product_attention_weights: query and key depths must match, got query (2,3,2,4), key "
      "(2,3,2,5)",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      nn::dot_product_attention_weights(q, jnp::ones({2, 3, 3, 4})),
      "dot_product_attention_weights: query and key num_heads must match, got query (2,3,2,4), "
      "key (2,3,3,4)",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      nn::dot_product_attention_weights(q, jnp::ones({3, 4})),
      "dot_product_attention_weights: query and key must have the same rank >= 3 (batch..., "
      "length, heads, depth), got query (2,3,2,4), key (3,4)",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      nn::dot_product_attention(q, q, jnp::ones({2, 4, 2, 4})),
      "dot_product_attention: key and value lengths must match, got query (2,3,2,4), key "
      "(2,3,2,4), value (2,4,2,4)",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      nn::dot_product_attention(q, q, q, {.mask = jnp::ones({2, 2, 3, 4})}),
      "dot_product_attention_weights: mask of shape (2,2,3,4) does not broadcast to the weights' "
      "(2,2,3,3)",
      std::invalid_argument);
  CHECK_THROWS_AS(nn::combine_masks({jnp::ones({1, 2}), jnp::ones({2})}), std::invalid_argument);
  CHECK_THROWS_WITH_AS(nn::combine_masks({jnp::ones({1, 2}), jnp::ones({2})}),
                       "combine_masks: masks must have the same rank, got ranks (2, 1)",
                       std::invalid_argument);
}

// ---- MultiHeadDotProductAttention ----------------------------------------------------------

TEST_CASE("MultiHeadDotProductAttention parameter tree and initial values are Flax's") {
  // Flax's docstring example: num_heads=8, qkv_features=16 on (4, 3, 2, 5) inputs.
  nn::MultiHeadDotProductAttention layer{.num_heads = 8, .qkv_features = 16};
  const rnd::Key root = rnd::PRNGKey(0);
  auto [y, vars] = layer.init_with_output(root, jnp::ones({4, 3, 2, 5}));
  CHECK(y.shape() == Shape{4, 3, 2, 5});
  CHECK(vars.keys() == std::vector<std::string>{"params"});
  CHECK(vars.at("params").keys() == std::vector<std::string>{"query", "key", "value", "out"});
  for (const char* p : {"query", "key", "value"}) {
    CHECK(vars.at(std::string("params/") + p).keys() == std::vector<std::string>{"kernel", "bias"});
    CHECK(vars.at(std::string("params/") + p + "/kernel").array().shape() == Shape{5, 8, 2});
    CHECK(vars.at(std::string("params/") + p + "/bias").array().shape() == Shape{8, 2});
    // kernel: lecun_normal on the flattened (5, 16) with the key of scope p, counter 1.
    Array want = jnp::reshape(
        lecun_matrix(nn::derive_key(nn::Compat::current, root, {p}, 1), 5, 16), {5, 8, 2});
    CHECK(bit_equal(vars.at(std::string("params/") + p + "/kernel").array(), want));
    for (double b : vars.at(std::string("params/") + p + "/bias").array().to_double())
      CHECK(b == 0.0);
  }
  CHECK(vars.at("params/out/kernel").array().shape() == Shape{8, 2, 5});
  CHECK(vars.at("params/out/bias").array().shape() == Shape{5});
  Array want_out = jnp::reshape(
      lecun_matrix(nn::derive_key(nn::Compat::current, root, {"out"}, 1), 16, 5), {8, 2, 5});
  CHECK(bit_equal(vars.at("params/out/kernel").array(), want_out));
  CHECK(param_count(vars) == 3 * (5 * 16 + 16) + 16 * 5 + 5);
  // out_features, use_bias = false, normalize_qk.
  nn::MultiHeadDotProductAttention other{
      .num_heads = 2, .out_features = 3, .use_bias = false, .normalize_qk = true};
  auto v2 = other.init(root, jnp::ones({1, 4, 6}));
  CHECK(v2.at("params").keys() ==
        std::vector<std::string>{"query", "key", "value", "query_ln", "key_ln", "out"});
  CHECK(v2.at("params/query").keys() == std::vector<std::string>{"kernel"});
  CHECK(v2.at("params/query/kernel").array().shape() == Shape{6, 2, 3});
  CHECK(v2.at("params/query_ln").keys() == std::vector<std::string>{"scale"});
  CHECK(v2.at("params/out/kernel").array().shape() == Shape{2, 3, 3});
  // Inside a module: autonamed MultiHeadDotProductAttention_0 / SelfAttention_0.
  struct Two : nn::Module<Two> {
    Array operator()(nn::Scope& s, const Array& x) const {
      Array a = s(nn::MultiHeadDotProductAttention{.num_heads = 2}, x);
      return s(nn::SelfAttention{.num_heads = 2}, a);
    }
  };
  CHECK(Two{}.init(root, jnp::ones({1, 3, 4})).at("params").keys() ==
        std::vector<std::string>{"MultiHeadDotProductAttention_0", "SelfAttention_0"});
}

TEST_CASE("MultiHeadDotProductAttention equals projections, attention and output in float64") {
  nn::MultiHeadDotProductAttention layer{.num_heads = 2, .qkv_features = 6, .out_features = 5};
  Array xq = normal(20, {2, 3, 4}), xk = normal(21, {2, 5, 4}), xv = normal(22, {2, 5, 4});
  Tree params = jitter(layer.init(rnd::PRNGKey(0), xq, xk, xv)["params"], 23);
  Array mask = jnp::astype(jnp::greater(normal(24, {2, 1, 3, 5}), Array(-0.5f)), DType::float32);
  Array y = layer.apply(Tree{{"params", params}}, xq, xk, xv, nn::AttentionCall{.mask = mask});
  CHECK(y.shape() == Shape{2, 3, 5});
  auto arr = [&](const char* p) { return params.at(p).array(); };
  Array q = from_double({2, 3, 2, 3}, project_double(xq, arr("query/kernel"), arr("query/bias")));
  Array k = from_double({2, 5, 2, 3}, project_double(xk, arr("key/kernel"), arr("key/bias")));
  Array v = from_double({2, 5, 2, 3}, project_double(xv, arr("value/kernel"), arr("value/bias")));
  auto md = mask.to_double();
  Ref ref = attention_double(q, k, v, nullptr, [&](int64_t b, int64_t, int64_t i, int64_t j) {
    return md[static_cast<size_t>((b * 3 + i) * 5 + j)] != 0.0;
  });
  std::vector<double> want = project_double(
      from_double({2, 3, 6}, ref.out), jnp::reshape(arr("out/kernel"), {6, 5}), arr("out/bias"));
  // q, k, v are rounded to float32 for the float64 attention (from_double), so both sides carry
  // ~1e-7 relative input rounding through four contractions of O(1) values: 2e-5 absolute.
  check_close(y, want, 2e-5);
  // Defaults: inputs_k = inputs_q, inputs_v = inputs_k.
  nn::MultiHeadDotProductAttention self_layer{.num_heads = 2, .qkv_features = 6, .out_features = 5};
  Tree vars{{"params", params}};
  CHECK(bit_equal(self_layer.apply(vars, xq), self_layer.apply(vars, xq, xq, xq)));
  CHECK(bit_equal(self_layer.apply(vars, xq, xk), self_layer.apply(vars, xq, xk, xk)));
  // SelfAttention is the same computation with the same parameter names.
  nn::SelfAttention sa{.num_heads = 2, .qkv_features = 6, .out_features = 5};
  CHECK(bit_equal(
      sa.apply(vars, xq, nn::AttentionCall{.mask = nn::make_causal_mask(jnp::ones({2, 3}))}),
      self_layer.apply(vars, xq,
                       nn::AttentionCall{.mask = nn::make_causal_mask(jnp::ones({2, 3}))})));
}

TEST_CASE(
    "MultiHeadDotProductAttention dropout: key make_rng('dropout') of its scope, or dropout_rng") {
  nn::MultiHeadDotProductAttention layer{.num_heads = 2, .dropout_rate = 0.5};
  Array x = normal(30, {2, 4, 4});
  Tree vars = layer.init(rnd::PRNGKey(0), x, nn::AttentionCall{.deterministic = true});
  const rnd::Key dkey = rnd::PRNGKey(5);
  Array y =
      layer.apply(vars, x, nn::AttentionCall{.deterministic = false}, nn::Rngs{{"dropout", dkey}});
  // The root module's first make_rng('dropout') is counter 1 at the empty path.
  Array y2 = layer.apply(
      vars, x,
      nn::AttentionCall{.deterministic = false,
                        .dropout_rng = nn::derive_key(nn::Compat::current, dkey, {}, 1)});
  CHECK(bit_equal(y, y2));
  Array det = layer.apply(vars, x, nn::AttentionCall{.deterministic = true});
  CHECK(!bit_equal(y, det));
  nn::MultiHeadDotProductAttention fixed{
      .num_heads = 2, .dropout_rate = 0.5, .deterministic = true};
  CHECK(bit_equal(fixed.apply(vars, x), det));
  CHECK_THROWS_WITH_AS(
      fixed.apply(vars, x, nn::AttentionCall{.deterministic = true}),
      "<root> (MultiHeadDotProductAttention): deterministic is set both on the module and at the "
      "call",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(layer.apply(vars, x),
                       "<root> (MultiHeadDotProductAttention): deterministic must be set on the "
                       "module or at the call",
                       nn::ModuleError);
  CHECK_THROWS_WITH_AS(layer.apply(vars, x, nn::AttentionCall{.deterministic = false}),
                       doctest::Contains("needs the rng stream 'dropout'"), nn::ModuleError);
  // Without dropout, `deterministic` is not required (Flax skips merge_param).
  nn::MultiHeadDotProductAttention plain{.num_heads = 2};
  CHECK(bit_equal(plain.apply(vars, x), det));
}

TEST_CASE(
    "gradients: MultiHeadDotProductAttention w.r.t. every parameter and the input, with a mask") {
  nn::MultiHeadDotProductAttention layer{.num_heads = 2, .qkv_features = 4, .out_features = 3};
  Array x = normal(40, {2, 3, 3});
  Tree params = jitter(layer.init(rnd::PRNGKey(0), x)["params"], 41);
  nn::AttentionCall call{.mask = nn::make_causal_mask(jnp::ones({2, 3}))};
  auto loss = loss_of(layer, {2, 3, 3}, call);
  check_param_grads(loss, params, x);
  check_input_grads(loss, params, x);
  // dot_product_attention alone, w.r.t. the query (the softmax and 1/sqrt(d) path), with a bias.
  Array k = normal(42, {1, 4, 2, 3}), v = normal(43, {1, 4, 2, 2}), bias = normal(44, {2, 1, 4});
  Array wts = normal(45, {1, 3, 2, 2});
  auto f = [&](const Tree&, const Array& q) {
    return jnp::sum(wts * nn::dot_product_attention(q, k, v, {.bias = bias}));
  };
  check_input_grads(f, Tree{}, normal(46, {1, 3, 2, 3}));
}

TEST_CASE("decoding token by token with the cache equals the full causal forward") {
  nn::MultiHeadDotProductAttention full{.num_heads = 2, .qkv_features = 8};
  nn::MultiHeadDotProductAttention dec{.num_heads = 2, .qkv_features = 8, .decode = true};
  const int64_t B = 2, L = 6, F = 5;
  Array x = normal(50, {B, L, F});
  // init with the full length makes params and the cache (zeros, index 0).
  Tree vars = dec.init(rnd::PRNGKey(0), x);
  CHECK(vars.keys() == std::vector<std::string>{"params", "cache"});
  CHECK(vars.at("cache").keys() ==
        std::vector<std::string>{"cached_key", "cached_value", "cache_index"});
  CHECK(vars.at("cache/cached_key").array().shape() == Shape{B, L, 2, 4});
  CHECK(vars.at("cache/cached_value").array().shape() == Shape{B, L, 2, 4});
  CHECK(vars.at("cache/cache_index").array().dtype() == DType::int32);
  CHECK(vars.at("cache/cache_index").array().item<int32_t>() == 0);
  for (double c : vars.at("cache/cached_key").array().to_double()) CHECK(c == 0.0);
  // The same params as a decode = false init: the cache changes no key.
  CHECK(tree_equal(vars["params"], full.init(rnd::PRNGKey(0), x)["params"]));
  vars = vars.set("params", jitter(vars["params"], 51));

  Array want = full.apply(Tree{{"params", vars["params"]}}, x,
                          nn::AttentionCall{.mask = nn::make_causal_mask(jnp::ones({B, L}))});
  Tree state = vars;
  for (int64_t t = 0; t < L; ++t) {
    auto [y, updates] = dec.apply(state, jnp::slice(x, 1, t, t + 1), nn::Mutable{"cache"});
    CHECK(y.shape() == Shape{B, 1, F});
    CHECK(updates.keys() == std::vector<std::string>{"cache"});
    state = state.set("cache", updates["cache"]);
    CHECK(state.at("cache/cache_index").array().item<int32_t>() == t + 1);
    // Same sums over the same unmasked keys (masked ones weigh exactly 0 on both sides), in a
    // different order of matmul blocks: agreement to float32 rounding, 2e-6 on O(1) outputs.
    auto expect = jnp::slice(want, 1, t, t + 1).to_double();
    check_close(y, expect, 2e-6);
  }
  // The cache holds each position's key projection, as the full forward computes it.
  Array keys_full =
      nn::DenseGeneral{.features = {2, 4}}.apply(Tree{{"params", vars["params"]["key"]}}, x);
  check_close(state.at("cache/cached_key").array(), keys_full.to_double(), 1e-6);
  // One more token: the cache is full.
  CHECK_THROWS_WITH_AS(dec.apply(state, jnp::slice(x, 1, 0, 1), nn::Mutable{"cache"}),
                       "<root> (MultiHeadDotProductAttention): the decode cache is full: "
                       "cache_index 6, max_length 6",
                       nn::ModuleError);
  // Two positions at once, or the cache not mutable: clear errors.
  CHECK_THROWS_WITH_AS(dec.apply(vars, jnp::slice(x, 1, 0, 2), nn::Mutable{"cache"}),
                       "<root> (MultiHeadDotProductAttention): autoregressive cache shape error: "
                       "expected query shape "
                       "(2,1,2,4) (one position) from the cache (2,6,2,4), got (2,2,2,4)",
                       nn::ModuleError);
  CHECK_THROWS_WITH_AS(dec.apply(vars, jnp::slice(x, 1, 0, 1)),
                       doctest::Contains("collection 'cache' is not mutable"), nn::ModuleError);
}

TEST_CASE("MultiHeadDotProductAttention errors name the module path and the shapes") {
  Array x = jnp::ones({2, 3, 6});
  CHECK_THROWS_WITH_AS(
      nn::MultiHeadDotProductAttention{.num_heads = 4}.init(rnd::PRNGKey(0), x),
      "<root> (MultiHeadDotProductAttention): qkv_features (6) must be divisible by num_heads (4)",
      nn::ModuleError);
  struct Wrap : nn::Module<Wrap> {
    Array operator()(nn::Scope& s, const Array& x) const {
      return s.call("attn", nn::MultiHeadDotProductAttention{.num_heads = 2, .qkv_features = 5}, x);
    }
  };
  CHECK_THROWS_WITH_AS(
      Wrap{}.init(rnd::PRNGKey(0), x),
      "attn (MultiHeadDotProductAttention): qkv_features (5) must be divisible by num_heads (2)",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      nn::MultiHeadDotProductAttention{.num_heads = 2}.init(rnd::PRNGKey(0), jnp::ones({6})),
      "<root> (MultiHeadDotProductAttention): inputs_q must be float32 of rank >= 2 (batch..., "
      "length, features), got float32 (6,)",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(nn::MultiHeadDotProductAttention{.num_heads = 2}.init(rnd::PRNGKey(0), x,
                                                                             jnp::ones({3, 4, 6})),
                       "<root> (MultiHeadDotProductAttention): inputs_q, inputs_k and inputs_v "
                       "batch dims must match, "
                       "got inputs_q (2,3,6), inputs_k (3,4,6), inputs_v (3,4,6)",
                       nn::ModuleError);
  CHECK_THROWS_WITH_AS(nn::MultiHeadDotProductAttention{}.init(rnd::PRNGKey(0), x),
                       "<root> (MultiHeadDotProductAttention): num_heads must be positive, got 0",
                       nn::ModuleError);
  // A mask of the wrong shape is reported with the module's path.
  nn::MultiHeadDotProductAttention ok{.num_heads = 2};
  auto vars = ok.init(rnd::PRNGKey(0), x);
  CHECK_THROWS_WITH_AS(
      ok.apply(vars, x, nn::AttentionCall{.mask = jnp::ones({2, 1, 4, 3})}),
      doctest::Contains("<root> (MultiHeadDotProductAttention): dot_product_attention_weights: "),
      nn::ModuleError);
}

TEST_CASE("tabulate lists the attention's DenseGeneral children with their parameter counts") {
  nn::MultiHeadDotProductAttention layer{.num_heads = 2, .qkv_features = 4};
  std::string table =
      layer.tabulate(rnd::PRNGKey(0), jnp::ones({1, 3, 6}),
                     nn::AttentionCall{.mask = nn::make_causal_mask(jnp::ones({1, 3}))});
  for (const char* row :
       {"query", "key", "value", "out", "DenseGeneral", "MultiHeadDotProductAttention"})
    CHECK_MESSAGE(table.find(row) != std::string::npos, row);
  // 3 * (6 * 4 + 4) + (4 * 6 + 6) = 114 parameters.
  CHECK(table.find("Total Parameters: 114") != std::string::npos);
}

TEST_CASE("attention_fn replaces dot_product_attention and sees the layer's mask and dropout") {
  int calls = 0;
  std::optional<Array> seen_mask;
  nn::AttentionFn twice = [&](const Array& q, const Array& k, const Array& v,
                              const nn::AttentionOptions& o) {
    ++calls;
    seen_mask = o.mask;
    CHECK(o.dropout_rate == 0.0);
    CHECK(o.deterministic);
    return nn::dot_product_attention(q, k, v, o) * 2.f;
  };
  nn::MultiHeadDotProductAttention plain{.num_heads = 2, .use_bias = false};
  nn::MultiHeadDotProductAttention custom{.num_heads = 2, .use_bias = false, .attention_fn = twice};
  Array x = normal(60, {1, 3, 4});
  Tree vars = plain.init(rnd::PRNGKey(0), x);
  Array mask = nn::make_causal_mask(jnp::ones({1, 3}));
  Array y = custom.apply(vars, x, nn::AttentionCall{.mask = mask});
  CHECK(calls == 1);
  REQUIRE(seen_mask.has_value());
  CHECK(bit_equal(*seen_mask, mask));
  // No bias: the output projection is linear, so twice the attention is twice the output.
  Array want = plain.apply(vars, x, nn::AttentionCall{.mask = mask}) * 2.f;
  check_close(y, want.to_double(), 1e-6);
}
