// Behaviour of models/gmlp.hpp (gmlp.md §3): the near-identity spatial init, exact causality,
// causal prefixes, slicing of W and bias, length/rank/dtype/id errors (full messages), batched
// attention, bidirectional attention, stochastic depth in gMLPVision, and finite-difference
// gradients through a tiny model in every mode.
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "core/tree.hpp"
#include "models/gmlp.hpp"
#include "nn/losses.hpp"

using namespace flaxpp;
namespace rnd = flaxpp::random;
using models::gMLP;

namespace {

constexpr int64_t kVocab = 11, kSeq = 7;
constexpr double kEps = 1e-3;  // the spatial init's epsilon (W ~ U[-eps/n, eps/n))

gMLP tiny(std::optional<int64_t> seq_len, bool causal,
          std::optional<int64_t> attn_dim = std::nullopt) {
  return gMLP{.num_tokens = kVocab,
              .dim = 8,
              .depth = 2,
              .ff_mult = 4,
              .attn_dim = attn_dim,
              .seq_len = seq_len,
              .causal = causal};
}

Array tokens_of(const Shape& shape, uint32_t seed = 5) {
  return rnd::randint(rnd::PRNGKey(seed), shape, 0, kVocab);
}

// A model whose every parameter matters (as torch_gmlp's _perturbed_model): LayerNorm scales and
// all biases move off their constant init, and spatial_weights get O(0.3) entries (the 1e-3/n init
// would make token mixing invisible).
Tree perturbed(const Tree& params, uint32_t seed = 11) {
  uint32_t i = 0;
  return tree_map_with_path(
      [&](const std::string& path, const Array& x) {
        rnd::Key k = rnd::fold_in(rnd::PRNGKey(seed), i++);
        auto ends_with = [&](const std::string& s) {
          return path.size() >= s.size() && path.compare(path.size() - s.size(), s.size(), s) == 0;
        };
        if (ends_with("spatial_weights")) return rnd::normal(k, x.shape()) * 0.3f;
        if (ends_with("bias") || ends_with("scale") || ends_with("spatial_biases"))
          return x + rnd::normal(k, x.shape()) * 0.1f;
        return x;
      },
      params);
}

Tree init_perturbed(const gMLP& model, const Array& tokens) {
  return Tree{{"params", perturbed(model.init(rnd::PRNGKey(0), tokens)["params"])}};
}

bool bit_equal(const Array& a, const Array& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

double max_abs_diff(const Array& a, const Array& b) {
  REQUIRE(a.shape() == b.shape());
  auto x = a.to_double(), y = b.to_double();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
  return m;
}

double max_abs(const Array& a) {
  double m = 0;
  for (double v : a.to_double()) m = std::max(m, std::fabs(v));
  return m;
}

// tokens with position j (of the last axis) replaced by (t + 1) mod vocab, in every row.
Array change_token(const Array& tokens, int64_t j) {
  std::vector<int32_t> v(tokens.data<int32_t>(), tokens.data<int32_t>() + tokens.size());
  int64_t L = tokens.shape().back();
  for (size_t i = static_cast<size_t>(j); i < v.size(); i += static_cast<size_t>(L))
    v[i] = (v[i] + 1) % static_cast<int32_t>(kVocab);
  return Array::from(tokens.shape(), v);
}

// logits[..., a:b, :] of (L, V) or (B, L, V) logits.
Array positions(const Array& logits, int64_t a, int64_t b) {
  return jnp::slice(logits, static_cast<int64_t>(logits.ndim()) - 2, a, b);
}

// The normalised gate LN(g) at init (scale 1, bias 0): LayerNorm's init output.
Array layer_norm_at_init(const Array& g) {
  return nn::LayerNorm{}.init_with_output(rnd::PRNGKey(0), g).first;
}

}  // namespace

// ---- §3: the spatial projection starts near the identity --------------------------------------

TEST_CASE("init: the projected gate W·norm(gate) + b is within eps·max|norm(gate)| of 1") {
  const int64_t n = 32, d = 16;
  // u = ones so the SGU without its Dense returns the projected gate itself.
  Array g = rnd::normal(rnd::PRNGKey(1), {3, n, d}) * 3.f + 1.f;
  Array x = jnp::concatenate({jnp::ones({3, n, d}), g}, -1);
  Array ln = layer_norm_at_init(g);
  for (bool causal : {true, false}) {
    CAPTURE(causal);
    models::SpatialGatingUnit sgu{
        .dim_out = d, .seq_len = n, .causal = causal, .use_proj_out = false};
    auto [gate, vars] = sgu.init_with_output(rnd::PRNGKey(2), x);
    double dev = max_abs_diff(gate, jnp::ones_like(gate));
    // |sum_k W[m,k] LN[k]| <= n * (eps/n) * max|LN|; the float32 addition of 1 adds <= 2^-24.
    double bound = kEps * max_abs(ln) + 6e-8;
    MESSAGE("causal=" << causal << ": max|W·LN(g) + b - 1| = " << dev << " <= " << bound);
    CHECK(dev <= bound);
    CHECK(dev > 0);  // W is not zero

    // With its Dense, the SGU is proj_out(u * gate) ~ proj_out(u), a plain channel MLP.
    models::SpatialGatingUnit full{.dim_out = d, .seq_len = n, .causal = causal};
    Array u = rnd::normal(rnd::PRNGKey(3), {3, n, d});
    Array xu = jnp::concatenate({u, g}, -1);
    auto [y, v2] = full.init_with_output(rnd::PRNGKey(2), xu);
    const Tree& proj = v2.at("params/proj_out");
    Array plain = nn::Dense{.features = d}.apply(Tree{{"params", proj}}, u);
    // |K^T (u * (gate - 1))|_j <= max|gate - 1| * max|u| * max_j sum_i |K_ij|, plus rounding.
    Array col_l1 = jnp::sum(jnp::abs(proj["kernel"].array()), {0});
    double bound2 = dev * max_abs(u) * max_abs(col_l1) + 1e-5;
    double dev2 = max_abs_diff(y, plain);
    MESSAGE("causal=" << causal << ": max|SGU(x) - proj_out(u)| = " << dev2 << " <= " << bound2);
    CHECK(dev2 <= bound2);
  }
}

TEST_CASE("spatial init scale is eps/n (not 0, not 1e-3 // n), bias is 1") {
  const int64_t n = 64;
  gMLP model{.num_tokens = kVocab, .dim = 8, .depth = 2, .seq_len = n};
  Tree params = model.init(rnd::PRNGKey(0), tokens_of({2, n}))["params"];
  const double r = kEps / n;
  const float bound = static_cast<float>(r);
  for (int i = 0; i < 2; ++i) {
    const Tree& sgu = params.at("layers_" + std::to_string(i) + "/layers_0/layers_0/sgu");
    Array w = sgu["spatial_weights"].array();
    auto v = w.to_double();
    double mean = 0, sq = 0;
    for (double x : v) mean += x / v.size();
    for (double x : v) sq += (x - mean) * (x - mean) / v.size();
    double std_ratio = std::sqrt(sq) / (r / std::sqrt(3.0));  // uniform(-r, r) has std r / sqrt(3)
    MESSAGE("layer " << i << ": W in [" << jnp::min(w).item<float>() << ", "
                     << jnp::max(w).item<float>() << "] vs +-" << r
                     << ", std / (r/sqrt 3) = " << std_ratio);
    CHECK(jnp::min(w).item<float>() >= -bound);
    CHECK(jnp::max(w).item<float>() < bound);
    CHECK(max_abs(w) > 0.9 * r);
    CHECK(std_ratio > 0.9);
    CHECK(std_ratio < 1.1);
    CHECK(bit_equal(sgu["spatial_biases"].array(), jnp::ones({n, 1})));
  }
}

TEST_CASE("short sequences slice both W[:L, :L] and bias[:L] (causal), full W when non-causal") {
  const int64_t n = 7, d = 4;
  Array g = rnd::normal(rnd::PRNGKey(4), {2, n, d});
  Array x_full = jnp::concatenate({jnp::ones({2, n, d}), g}, -1);
  for (bool causal : {true, false}) {
    models::SpatialGatingUnit sgu{
        .dim_out = d, .seq_len = n, .causal = causal, .use_proj_out = false};
    Tree vars = sgu.init(rnd::PRNGKey(0), x_full);
    // Distinct, visible W and bias (bias[m] = 1 + m / 10), so a wrong slice shows.
    std::vector<float> bias(n);
    for (int64_t m = 0; m < n; ++m) bias[m] = 1.f + 0.1f * static_cast<float>(m);
    vars = vars.set("params/spatial_weights", rnd::normal(rnd::PRNGKey(9), {n, n}))
               .set("params/spatial_biases", Array::from({n, 1}, bias));
    const auto W = vars.at("params/spatial_weights").array().to_double();
    for (int64_t L : causal ? std::vector<int64_t>{1, 3, 5, 7} : std::vector<int64_t>{7}) {
      CAPTURE(causal);
      CAPTURE(L);
      Array gl = jnp::slice(g, 1, 0, L);
      Array out = sgu.apply(vars, jnp::concatenate({jnp::ones({2, L, d}), gl}, -1));
      REQUIRE(out.shape() == Shape{2, L, d});
      auto ln = layer_norm_at_init(gl).to_double();
      auto o = out.to_double();
      double err = 0;
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t m = 0; m < L; ++m)
          for (int64_t c = 0; c < d; ++c) {
            double acc = bias[m];
            for (int64_t k = 0; k < (causal ? m + 1 : L); ++k)
              acc += W[m * n + k] * ln[(b * L + k) * d + c];
            err = std::max(err, std::fabs(acc - o[(b * L + m) * d + c]));
          }
      CHECK(err < 1e-5);
    }
  }
}

// ---- causality ---------------------------------------------------------------------------------

TEST_CASE("causality: changing token j leaves every output i < j bit-identical") {
  struct Case {
    std::string name;
    gMLP model;
    Shape shape;
  };
  std::vector<Case> cases = {
      {"spatial causal", tiny(kSeq, true), {2, kSeq}},
      {"spatial causal + attn", tiny(kSeq, true, 4), {2, kSeq}},
      {"spatial causal + attn, prefix L=5 < n", tiny(kSeq, true, 4), {2, 5}},
      {"spatial causal, unbatched", tiny(kSeq, true), {kSeq}},
      {"original + attn (always causal in gmlp_flax)", tiny(std::nullopt, true, 4), {2, 9}}};
  for (auto& [name, model, shape] : cases) {
    CAPTURE(name);
    Array tokens = tokens_of(shape);
    Tree vars = init_perturbed(model, tokens);
    Array base = model.apply(vars, tokens);
    int64_t L = shape.back();
    for (int64_t j = 0; j < L; ++j) {
      CAPTURE(j);
      Array out = model.apply(vars, change_token(tokens, j));
      CHECK(bit_equal(positions(out, 0, j), positions(base, 0, j)));
      CHECK(max_abs_diff(positions(out, j, j + 1), positions(base, j, j + 1)) > 1e-6);
      if (j + 1 < L)
        CHECK(max_abs_diff(positions(out, j + 1, L), positions(base, j + 1, L)) > 1e-6);
    }
  }
  // The original without attention mixes nothing: token j changes only output j.
  gMLP plain = tiny(std::nullopt, true);
  Array tokens = tokens_of({2, 9});
  Tree vars = init_perturbed(plain, tokens);
  Array base = plain.apply(vars, tokens);
  for (int64_t j = 0; j < 9; ++j) {
    Array out = plain.apply(vars, change_token(tokens, j));
    CHECK(bit_equal(positions(out, 0, j), positions(base, 0, j)));
    CHECK(bit_equal(positions(out, j + 1, 9), positions(base, j + 1, 9)));
  }
}

TEST_CASE(
    "causal prefix: a prefix of length L < n gives the first L outputs of the full sequence") {
  // Tolerance: the prefix runs products of other shapes ((B*L, d) @ kernel, W[:L, :L] @ gate),
  // which OpenBLAS blocks differently (a lone Dense on 2*L rows vs 2*n rows already differs in the
  // last bit), so equality is not bit for bit; the masked terms are exact zeros, so only summation
  // order differs. Observed: ~3e-7 of max|logits| (a few ulps); tolerance 1e-5 relative, while a
  // wrong slice or a leak from the future would be O(0.1).
  for (std::optional<int64_t> attn : {std::optional<int64_t>{}, std::optional<int64_t>{4}}) {
    gMLP model = tiny(kSeq, true, attn);
    Array full = tokens_of({2, kSeq});
    Tree vars = init_perturbed(model, full);
    Array lf = model.apply(vars, full);
    double worst = 0;
    int bit_exact = 0;
    for (int64_t L = 1; L < kSeq; ++L) {
      Array lp = model.apply(vars, jnp::slice(full, 1, 0, L));
      Array ref = positions(lf, 0, L);
      worst = std::max(worst, max_abs_diff(lp, ref) / std::max(1.0, max_abs(ref)));
      bit_exact += bit_equal(lp, ref);
    }
    MESSAGE("attn=" << attn.value_or(0) << ": prefix vs full, max rel diff " << worst
                    << ", bit-exact for " << bit_exact << " of " << kSeq - 1 << " lengths");
    CHECK(worst <= 1e-5);
  }
}

// ---- errors (full messages) --------------------------------------------------------------------

TEST_CASE("errors: sequence length, token ids, rank and dtype") {
  gMLP causal = tiny(kSeq, true), bidir = tiny(kSeq, false);
  Tree vars = causal.init(rnd::PRNGKey(0), tokens_of({2, kSeq}));  // same tree for both

  CHECK_THROWS_WITH_AS(
      bidir.apply(vars, tokens_of({2, 5})),
      "<root> (gMLP): a non-causal model needs sequence length == seq_len 7, got 5",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      bidir.init(rnd::PRNGKey(0), tokens_of({2, 8})),
      "<root> (gMLP): a non-causal model needs sequence length == seq_len 7, got 8",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      causal.apply(vars, tokens_of({2, 8})),
      "<root> (gMLP): sequence length 8 exceeds seq_len 7 (a causal model accepts any "
      "length <= seq_len)",
      nn::ModuleError);
  // The SGU checks on its own too (gMLP without num_tokens passes features straight through).
  models::SpatialGatingUnit sgu{.dim_out = 4, .seq_len = 3, .causal = false};
  CHECK_THROWS_WITH_AS(
      sgu.init(rnd::PRNGKey(0), jnp::zeros({2, 4, 8})),
      "<root> (SpatialGatingUnit): a non-causal model needs sequence length == seq_len 3, got 4",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      sgu.init(rnd::PRNGKey(0), jnp::zeros({2, 3, 7})),
      "<root> (SpatialGatingUnit): the last axis must be even to split into (x, gate), got (2,3,7)",
      nn::ModuleError);

  Array bad = Array::from({2, 3}, std::vector<int32_t>{0, 1, 2, 3, 11, 5});
  CHECK_THROWS_WITH_AS(
      causal.apply(vars, bad),
      "to_embed (Embed): token id 11 at flat position 4 is out of range for num_embeddings = 11 "
      "(valid: [-11, 11))",
      nn::ModuleError);
  Array neg = Array::from({3}, std::vector<int32_t>{0, -12, 1});
  CHECK_THROWS_WITH_AS(
      causal.apply(vars, neg),
      "to_embed (Embed): token id -12 at flat position 1 is out of range for num_embeddings = 11 "
      "(valid: [-11, 11))",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      causal.apply(vars, jnp::zeros({2, kSeq})),
      "<root> (gMLP): expected int32 tokens of shape (L,) or (B, L), got float32 (2,7)",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      causal.apply(vars, jnp::zeros({1, 2, kSeq}, DType::int32)),
      "<root> (gMLP): expected int32 tokens of shape (L,) or (B, L), got int32 (1,2,7)",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(causal.apply(vars, Array(int32_t{3})),
                       "<root> (gMLP): expected int32 tokens of shape (L,) or (B, L), got int32 ()",
                       nn::ModuleError);
  // Without num_tokens the input is float (..., L, dim).
  gMLP features{.dim = 8, .depth = 1};
  CHECK_THROWS_WITH_AS(features.init(rnd::PRNGKey(0), jnp::zeros({2, 5, 6})),
                       "<root> (gMLP): without num_tokens the input must be float32 (..., L, 8), "
                       "got float32 (2,5,6)",
                       nn::ModuleError);
  // Loss shapes.
  Array logits = causal.apply(vars, tokens_of({2, kSeq}));
  CHECK_THROWS_WITH_AS(models::next_token_loss(logits, tokens_of({2, 6})),
                       "next_token_loss: logits (2,7,11) do not match tokens (2,6)",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(models::next_token_loss(positions(logits, 0, 1), tokens_of({2, 1})),
                       "next_token_loss: need at least 2 tokens, got 1", std::invalid_argument);
  CHECK_THROWS_WITH_AS(models::next_token_loss(logits, jnp::zeros({2, kSeq})),
                       "next_token_loss: tokens must be int32", std::invalid_argument);
}

// ---- attention ---------------------------------------------------------------------------------

TEST_CASE("batched attention equals the unbatched result for every batch element") {
  for (std::optional<int64_t> seq : {std::optional<int64_t>{}, std::optional<int64_t>{kSeq}}) {
    for (bool causal : {true, false}) {
      gMLP model = tiny(seq, causal, 4);
      Array tokens = tokens_of({3, kSeq});
      Tree vars = init_perturbed(model, tokens);
      Array batched = model.apply(vars, tokens);
      REQUIRE(batched.shape() == Shape{3, kSeq, kVocab});
      double worst = 0;
      for (int64_t b = 0; b < 3; ++b) {
        Array one = model.apply(vars, jnp::index(tokens, b));
        REQUIRE(one.shape() == Shape{kSeq, kVocab});
        worst = std::max(worst, max_abs_diff(one, jnp::index(batched, b)));
      }
      double rel = worst / max_abs(batched);
      MESSAGE("seq_len=" << seq.value_or(0) << " causal=" << causal
                         << ": max |unbatched - batched row| = " << worst << " (" << rel
                         << " of max|logits| " << max_abs(batched) << ")");
      // Attention itself runs per batch element with the same shapes, but the Dense layers fold
      // the batch into the rows of one sgemm ((B*L, d) vs (L, d)), and OpenBLAS blocks a 21-row
      // product differently from a 7-row one (even a lone Dense differs in the last bit), and two
      // layers of LayerNorm amplify that: ~1e-6 of max|logits| is observed; a batch-mixing bug
      // would be O(0.1). Tolerance 1e-5 relative.
      CHECK(rel <= 1e-5);
    }
  }
}

TEST_CASE("attention with causal = false sees the future; causal = true does not") {
  gMLP causal = tiny(std::nullopt, true, 4), bidir = tiny(std::nullopt, false, 4);
  Array tokens = tokens_of({2, 9});
  Tree vars = init_perturbed(causal, tokens);
  Array lc = causal.apply(vars, tokens), lb = bidir.apply(vars, tokens);
  // Same parameters: every position but the last differs.
  CHECK(max_abs_diff(positions(lc, 0, 8), positions(lb, 0, 8)) > 1e-4);
  // With one layer the last position attends to the same inputs either way (its mask row is
  // empty, exp(-1e10 - max) is an exact 0 elsewhere): bit-identical. (With two layers it is not:
  // the second layer's keys come from the first layer's different outputs.)
  gMLP c1 = causal, b1 = bidir;
  c1.depth = b1.depth = 1;
  Tree v1 = init_perturbed(c1, tokens);
  CHECK(bit_equal(positions(c1.apply(v1, tokens), 8, 9), positions(b1.apply(v1, tokens), 8, 9)));
  CHECK_FALSE(
      bit_equal(positions(c1.apply(v1, tokens), 7, 8), positions(b1.apply(v1, tokens), 7, 8)));
  // Changing the last token moves the earlier outputs of the bidirectional model.
  Array moved = bidir.apply(vars, change_token(tokens, 8));
  CHECK(max_abs_diff(positions(moved, 0, 8), positions(lb, 0, 8)) > 1e-6);
  // Same for spatial gating: non-causal W is dense.
  gMLP sc = tiny(kSeq, true), sb = tiny(kSeq, false);
  Array t7 = tokens_of({2, kSeq});
  Tree v7 = init_perturbed(sc, t7);
  Array base = sb.apply(v7, t7);
  CHECK(max_abs_diff(positions(sb.apply(v7, change_token(t7, kSeq - 1)), 0, kSeq - 1),
                     positions(base, 0, kSeq - 1)) > 1e-6);
  CHECK(max_abs_diff(sc.apply(v7, t7), base) > 1e-4);
}

// ---- gMLPVision stochastic depth --------------------------------------------------------------

TEST_CASE(
    "gMLPVision stochastic depth: deterministic needs no rng; training drops blocks and scales by "
    "1/p") {
  models::gMLPVision model{.image_size = 8,
                           .patch_size = 4,
                           .num_classes = 5,
                           .dim = 8,
                           .depth = 1,
                           .survival_prob = 0.5};
  models::gMLPVision keep_all = model;
  keep_all.survival_prob = 1.0;
  const int64_t B = 16;
  Array images = rnd::normal(rnd::PRNGKey(1), {B, 8, 8, 3});
  Tree vars = Tree{{"params", perturbed(model.init(rnd::PRNGKey(0), images)["params"])}};

  // Deterministic (the default): no rng, no drop, no scaling.
  Array det = model.apply(vars, images);
  CHECK(bit_equal(det, keep_all.apply(vars, images, false)));
  CHECK(bit_equal(det, model.apply(vars, images, true)));

  // Training without the dropout stream is an error naming it.
  CHECK_THROWS_WITH_AS(
      model.apply(vars, images, false),
      "<root> (gMLPVision): needs the rng stream 'dropout', which was not provided (pass "
      "nn::Rngs{{\"dropout\", key}} to apply)",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      model.apply(vars, images, false, nn::Rngs{{"params", rnd::PRNGKey(3)}}),
      "<root> (gMLPVision): needs the rng stream 'dropout', which was not provided (pass "
      "nn::Rngs{{\"dropout\", key}} to apply)",
      nn::ModuleError);

  // Training: each example keeps the block with probability p, and a kept block's output is h / p.
  // With p = 1/2, h / p == the block with proj_out scaled by 2 (exact in float32), and a dropped
  // block == proj_out zeroed; so each row equals one of those, bit for bit.
  rnd::Key dropout = rnd::PRNGKey(42);
  Array train = model.apply(vars, images, false, nn::Rngs{{"dropout", dropout}});
  auto scaled = [&](float f) {
    return vars
        .set("params/blocks_0/proj_out/kernel",
             vars.at("params/blocks_0/proj_out/kernel").array() * f)
        .set("params/blocks_0/proj_out/bias", vars.at("params/blocks_0/proj_out/bias").array() * f);
  };
  Array kept = model.apply(scaled(2.f), images), dropped = model.apply(scaled(0.f), images);
  // The mask: bernoulli(p) from the root scope's first make_rng("dropout"), one per example.
  Array alive;
  {
    rnd::ScopedBitsMode mode(nn::bits_mode_of(nn::default_compat()));
    alive = rnd::bernoulli(nn::derive_key(nn::default_compat(), dropout, {}, 1), 0.5f, {B, 1, 1});
  }
  int n_kept = 0;
  for (int64_t b = 0; b < B; ++b) {
    bool a = alive.data<uint8_t>()[b] != 0;
    n_kept += a;
    CAPTURE(b);
    CHECK(bit_equal(jnp::index(train, b), jnp::index(a ? kept : dropped, b)));
  }
  MESSAGE("stochastic depth p=0.5: " << n_kept << " of " << B << " examples kept the block");
  CHECK(n_kept > 0);
  CHECK(n_kept < B);
  // Another dropout key gives another mask; the same key the same output.
  CHECK(bit_equal(train, model.apply(vars, images, false, nn::Rngs{{"dropout", dropout}})));
  CHECK_FALSE(
      bit_equal(train, model.apply(vars, images, false, nn::Rngs{{"dropout", rnd::PRNGKey(43)}})));

  // Errors.
  models::gMLPVision bad = model;
  bad.survival_prob = 0.0;
  CHECK_THROWS_WITH_AS(bad.apply(vars, images),
                       "<root> (gMLPVision): survival_prob must be in (0, 1], got 0.000000",
                       nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      model.apply(vars, jnp::zeros({1, 9, 9, 3})),
      "<root> (gMLPVision): expected float32 images (B, 8, 8, C), got float32 (1,9,9,3)",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      model.apply(vars, jnp::zeros({8, 8, 3})),
      "<root> (gMLPVision): expected float32 images (B, 8, 8, C), got float32 (8,8,3)",
      nn::ModuleError);
}

// ---- finite-difference gradients ---------------------------------------------------------------

namespace {

// Compares value_and_grad of `loss` over the params tree with central differences at a few
// sampled entries of every leaf. The model runs in float32; the quotient is formed in double
// from the exact float32 step, (L(p + h) - L(p - h)) / ((p + h) - (p - h)).
// Tolerance |fd - g| <= atol + rtol |g|: with h = 1e-2 the truncation error h^2 |f'''|/6 ~ 2e-5
// for O(1) third derivatives, and the float32 rounding of a loss ~ 2.4 (a few ulps, ~1e-6) divided
// by 2h is ~5e-5, so atol = 5e-4 is ~10x the expected error; rtol = 1e-2 covers larger slopes.
void check_fd(const std::string& mode, const std::function<Array(const Tree&)>& loss,
              const Tree& params, int per_leaf = 3) {
  auto [value, grads] = value_and_grad(loss)(params);
  CHECK(std::isfinite(value.item<float>()));
  CHECK(tree_structure(grads) == tree_structure(params));
  const double h = 1e-2, atol = 5e-4, rtol = 1e-2;
  double worst = 0, worst_ratio = 0;
  int checked = 0;
  uint32_t leaf_no = 0;
  for (auto& [path, leaf] : flatten_dict(params)) {
    Array idx = rnd::randint(rnd::fold_in(rnd::PRNGKey(77), leaf_no++), {per_leaf}, 0, leaf.size());
    const float* g = grads.at(path).array().data<float>();
    for (int s = 0; s < per_leaf; ++s) {
      int64_t i = idx.data<int32_t>()[s];
      auto at = [&](float delta, float* x_out) {
        std::vector<float> v = leaf.to_float();
        v[i] = v[i] + delta;
        *x_out = v[i];
        return static_cast<double>(
            loss(params.set(path, Array::from(leaf.shape(), v))).item<float>());
      };
      float xp, xm;
      double lp = at(static_cast<float>(h), &xp), lm = at(static_cast<float>(-h), &xm);
      double fd = (lp - lm) / (static_cast<double>(xp) - static_cast<double>(xm));
      double err = std::fabs(fd - g[i]);
      INFO(mode << ": " << path << "[" << i << "]: autodiff " << g[i] << ", finite difference "
                << fd);
      CHECK(err <= atol + rtol * std::fabs(g[i]));
      worst = std::max(worst, err);
      worst_ratio = std::max(worst_ratio, err / (atol + rtol * std::fabs(g[i])));
      ++checked;
    }
  }
  MESSAGE(mode << ": " << checked << " entries, loss " << value.item<float>()
               << ", max |autodiff - fd| = " << worst << " (" << worst_ratio
               << " of the tolerance)");
}

void check_lm_fd(const std::string& mode, const gMLP& model, const Array& tokens) {
  Tree params = init_perturbed(model, tokens)["params"];
  check_fd(
      mode,
      [&](const Tree& p) {
        return models::next_token_loss(model.apply(Tree{{"params", p}}, tokens), tokens);
      },
      params);
}

}  // namespace

TEST_CASE("finite-difference gradients through a tiny gMLP in every mode") {
  check_lm_fd("original", tiny(std::nullopt, true), tokens_of({2, kSeq}));
  check_lm_fd("original + attn, unbatched (L,)", tiny(std::nullopt, true, 4), tokens_of({kSeq}));
  check_lm_fd("original + bidirectional attn", tiny(std::nullopt, false, 4), tokens_of({2, kSeq}));
  check_lm_fd("spatial causal + attn, prefix L=5 < n", tiny(kSeq, true, 4), tokens_of({2, 5}));
  check_lm_fd("spatial non-causal", tiny(kSeq, false), tokens_of({2, kSeq}));

  // A causal prefix never reads W's upper triangle or rows/columns >= L, and its last position
  // predicts nothing (next-token loss), so only W[m, k] with k <= m < L - 1 gets a gradient.
  gMLP model = tiny(kSeq, true);
  Array t5 = tokens_of({2, 5});
  Tree params = init_perturbed(model, t5)["params"];
  Tree g = grad([&](const Tree& p) {
    return models::next_token_loss(model.apply(Tree{{"params", p}}, t5), t5);
  })(params);
  auto gw = g.at("layers_0/layers_0/layers_0/sgu/spatial_weights").array().to_double();
  auto gb = g.at("layers_0/layers_0/layers_0/sgu/spatial_biases").array().to_double();
  int nonzero_outside = 0, nonzero_inside = 0;
  for (int64_t m = 0; m < kSeq; ++m) {
    for (int64_t k = 0; k < kSeq; ++k) {
      bool used = m < 4 && k <= m;
      (used ? nonzero_inside : nonzero_outside) += gw[m * kSeq + k] != 0.0;
    }
    (m < 4 ? nonzero_inside : nonzero_outside) += gb[m] != 0.0;
  }
  CHECK(nonzero_outside == 0);
  CHECK(nonzero_inside == 10 + 4);

  // gMLPVision: mean softmax cross-entropy against fixed labels; deterministic, then training
  // with a fixed dropout key (the same mask for every evaluation, so the function is smooth).
  models::gMLPVision vision{.image_size = 8,
                            .patch_size = 4,
                            .num_classes = 5,
                            .dim = 8,
                            .depth = 2,
                            .survival_prob = 0.5};
  Array images = rnd::normal(rnd::PRNGKey(1), {3, 8, 8, 3});
  Array labels = Array::from({3, 1}, std::vector<int32_t>{0, 3, 4});
  Tree vparams = perturbed(vision.init(rnd::PRNGKey(0), images)["params"]);
  auto xent = [&](const Array& logits) {
    return -jnp::mean(jnp::take_along_axis(jnp::log_softmax(logits, -1), labels, -1));
  };
  check_fd(
      "vision tiny, deterministic",
      [&](const Tree& p) {
        return xent(vision.apply(Tree{{"params", p}}, images));
      },
      vparams);
  check_fd(
      "vision tiny, stochastic depth (fixed dropout key)",
      [&](const Tree& p) {
        return xent(vision.apply(Tree{{"params", p}}, images, false,
                                 nn::Rngs{{"dropout", rnd::PRNGKey(5)}}));
      },
      vparams, 2);
}

TEST_CASE("next_token_loss equals the mean cross-entropy of logits[:, :-1] against tokens[:, 1:]") {
  // It scores every position (a placeholder label at the last) instead of slicing the logits:
  // the same value, bit for bit, and the same gradient, with an exactly zero last row.
  Array logits = rnd::normal(rnd::PRNGKey(3), {3, 6, 11}) * 4.f;
  Array tokens = rnd::randint(rnd::PRNGKey(4), {3, 6}, 0, 11);
  auto sliced = [&](const Array& z) {
    return jnp::mean(optax::softmax_cross_entropy_with_integer_labels(jnp::slice(z, 1, 0, 5),
                                                                      jnp::slice(tokens, 1, 1, 6)));
  };
  auto ours = [&](const Array& z) { return models::next_token_loss(z, tokens); };
  CHECK(ours(logits).item<float>() == sliced(logits).item<float>());
  auto g = grad(ours)(logits).to_float(), want = grad(sliced)(logits).to_float();
  REQUIRE(g.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::fabs(double(g[i]) - want[i]));
  CHECK(worst <= 1e-9);  // the same float operations per row
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t v = 0; v < 11; ++v) CHECK(g[static_cast<size_t>((b * 6 + 5) * 11 + v)] == 0.f);
  // A 1-D sequence is a batch of one.
  Array one = jnp::slice(logits, 0, 0, 1), t1 = jnp::slice(tokens, 0, 0, 1);
  CHECK(models::next_token_loss(jnp::reshape(one, {6, 11}), jnp::reshape(t1, {6})).item<float>() ==
        models::next_token_loss(one, t1).item<float>());
}
