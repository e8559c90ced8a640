// gMLP ("Pay Attention to MLPs", Liu et al. 2021) exactly as the Flax package gmlp_flax defines
// it, plus the spatial gating it never finished (see ../shared/reference/gmlp.md).
//
//   models::gMLP model{.num_tokens = 20000, .dim = 512, .depth = 4};        // the original README
//   Tree variables = model.init(random::PRNGKey(0), tokens);               // tokens int32 (1, 1000)
//   Array logits = model.apply(variables, tokens);                         // (1, 1000, 20000)
//
//   models::gMLP lm{.num_tokens = 256, .dim = 128, .depth = 4, .seq_len = 128};  // spatial, causal
//
// Modes:
// - original (no seq_len): gmlp_flax's modules, parameter tree and values (per nn::Compat);
//   its SGU has no token mixing. Attention (attn_dim) works batched and unbatched.
// - spatial (seq_len = n): every SGU owns spatial_weights (n, n) ~ U[-1e-3/n, 1e-3/n) and
//   spatial_biases (n, 1) = 1, applied to the normalised gate before gate_res is added:
//   gate[b, m] = sum_k W[m, k] gate[b, k] + bias[m].
// - causal (default true): W is lower-triangular and attention is masked (j > i -> -1e10);
//   any length L <= n runs on W[:L, :L], bias[:L]. Non-causal models need L == n.
// Tokens are int32 of shape (L,) or (B, L); without num_tokens the input is float (..., L, dim).
// Errors (nn::ModuleError) name the module: ids out of range, wrong length, rank or dtype.
#pragma once

#include <optional>
#include <vector>

#include "../nn/nn.hpp"

namespace flaxpp::models {

// gmlp_flax's Residual: for each layer, x = layer(x) + x.
struct Residual : nn::Module<Residual> {
  std::vector<nn::AnyModule> layers;
  Array operator()(nn::Scope& s, const Array& x) const;
};

// gmlp_flax's PreNorm: owns `norm` (LayerNorm); for each layer, x = layer(norm(x)).
struct PreNorm : nn::Module<PreNorm> {
  std::vector<nn::AnyModule> layers;
  Array operator()(nn::Scope& s, const Array& x) const;
};

// Single-head attention (the paper's tiny attention, aMLP). Batched over leading axes.
struct Attention : nn::Module<Attention> {
  int64_t dim_out = 0;
  int64_t dim_head = 64;
  bool causal = true;
  Array operator()(nn::Scope& s, const Array& x) const;
};

struct SpatialGatingUnit : nn::Module<SpatialGatingUnit> {
  int64_t dim_out = 0;
  std::optional<int64_t> seq_len = std::nullopt;  // spatial projection when set
  bool causal = true;
  bool use_proj_out = true;  // gmlp_flax has a Dense inside the SGU; the paper (vision) does not
  Array operator()(nn::Scope& s, const Array& x,
                   const std::optional<Array>& gate_res = std::nullopt) const;
};

struct gMLPBlock : nn::Module<gMLPBlock> {
  int64_t dim = 0;
  int64_t dim_ff = 0;
  std::optional<int64_t> attn_dim = std::nullopt;
  std::optional<int64_t> seq_len = std::nullopt;
  bool causal = true;
  Array operator()(nn::Scope& s, const Array& x) const;
};

struct gMLP : nn::Module<gMLP> {
  std::optional<int64_t> num_tokens = std::nullopt;
  int64_t dim = 0;
  int64_t depth = 0;
  int64_t ff_mult = 4;
  std::optional<int64_t> attn_dim = std::nullopt;
  std::optional<int64_t> seq_len = std::nullopt;  // extension: spatial gating
  bool causal = true;                             // extension: causal spatial gating/attention

  Array operator()(nn::Scope& s, const Array& tokens) const;
};

// gMLP for images (the paper's vision model): NHWC float32 images -> non-overlapping patches ->
// Dense(dim) `stem` -> depth blocks `blocks_i` {norm, proj_in (dim -> ff_mult*dim), gelu,
// sgu {norm, spatial_weights, spatial_biases} (bidirectional, no Dense inside), proj_out} ->
// LayerNorm `norm` -> mean over tokens -> Dense(num_classes) `head`.
// Stochastic depth: with survival_prob p < 1 and deterministic = false, each example skips a
// block with probability 1 - p (the `dropout` rng stream) and kept outputs are scaled by 1/p.
// Patches are flattened in (row, column, channel) order.
struct gMLPVision : nn::Module<gMLPVision> {
  int64_t image_size = 224;
  int64_t patch_size = 16;
  int64_t num_classes = 1000;
  int64_t dim = 128;
  int64_t depth = 30;
  int64_t ff_mult = 6;
  double survival_prob = 1.0;

  Array operator()(nn::Scope& s, const Array& images, bool deterministic = true) const;
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

// gMLP-Ti / S / B of the paper (dim 128 / 256 / 512, depth 30, 224x224, patch 16).
gMLPVision gmlp_vision_ti(int64_t num_classes = 1000);
gMLPVision gmlp_vision_s(int64_t num_classes = 1000);
gMLPVision gmlp_vision_b(int64_t num_classes = 1000);

// Mean next-token softmax cross-entropy: logits (B, L, V) or (L, V) at t predict tokens at t+1.
Array next_token_loss(const Array& logits, const Array& tokens);

}  // namespace flaxpp::models
