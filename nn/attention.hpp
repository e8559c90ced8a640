// Attention, as flax.linen.attention: dot_product_attention(_weights), the mask helpers,
// MultiHeadDotProductAttention and SelfAttention, with Flax's autoregressive `cache`.
//
//   Array y = nn::dot_product_attention(q, k, v, {.mask = nn::make_causal_mask(ids)});
//   //   q (batch..., q_len, heads, depth), k (batch..., kv_len, heads, depth),
//   //   v (batch..., kv_len, heads, v_depth) -> (batch..., q_len, heads, v_depth)
//   nn::MultiHeadDotProductAttention mha{.num_heads = 8, .qkv_features = 64};
//   Array z = s(mha, x, nn::AttentionCall{.mask = mask});   // self-attention, x (batch..., L, F)
//   Array c = s(mha, x, memory);                             // keys and values from `memory`
//   // params: query/key/value DenseGeneral kernel (F, heads, head_dim), bias (heads, head_dim);
//   //         out kernel (heads, head_dim, out_features), bias (out_features,)
//
// Weights: softmax over kv of (q / sqrt(depth)) . k + bias, with entries where `mask` is false
// (or 0) set to float32's lowest value first, so a fully masked row is uniform, as in Flax.
// Masks and biases broadcast to (batch..., heads, q_len, kv_len). Dropout on the weights keeps
// each with probability 1 - dropout_rate (bernoulli(dropout_rng)) and multiplies the weights by
// keep / (1 - rate); broadcast_dropout shares one (q_len, kv_len) mask across batch and heads.
//
// Decoding (`decode = true`): init with a full-length input creates the `cache` collection
// (cached_key, cached_value: (batch..., max_len, heads, head_dim) zeros; cache_index: int32 0).
// Then each apply with nn::Mutable{"cache"} takes one position (batch..., 1, F), writes its key
// and value at cache_index, attends to positions <= cache_index and increments it: O(max_len)
// work per token.
//
//   Tree vars = model.init(key, jnp::zeros({1, max_len, F}));       // params + cache
//   auto [y, updates] = model.apply(vars, x_t, nn::Mutable{"cache"}); // x_t (1, 1, F)
//   vars = vars.set("cache", updates["cache"]);
//
// Errors: std::invalid_argument for the functions (naming the function and the shapes), and
// ModuleError naming the module path for the modules: num_heads not dividing qkv_features,
// inputs of rank < 2 or with mismatched batch shapes, a decode query that is not one position of
// the cache's shape, a full cache, `deterministic` set on both or neither of the module and the
// call when dropout_rate > 0, a missing `dropout` rng.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "../core/ops.hpp"
#include "module.hpp"

namespace flaxpp::nn {

// dot_product_attention's keyword arguments (Flax's names and defaults).
struct AttentionOptions {
  std::optional<Array> bias = std::nullopt;
  std::optional<Array> mask = std::nullopt;
  bool broadcast_dropout = true;
  std::optional<random::Key> dropout_rng = std::nullopt;
  double dropout_rate = 0.0;
  bool deterministic = false;
};

// (batch..., heads, q_len, kv_len) softmax weights.
Array dot_product_attention_weights(const Array& query, const Array& key,
                                    const AttentionOptions& options = {});
// (batch..., q_len, heads, v_depth): the weights applied to `value`.
Array dot_product_attention(const Array& query, const Array& key, const Array& value,
                            const AttentionOptions& options = {});

using PairwiseFn = std::function<Array(const Array&, const Array&)>;
// mask[..., 0, i, j] = pairwise_fn(query_input[..., i], key_input[..., j]) as `dtype`, with
// extra_batch_dims leading axes of size 1: (1..., batch..., 1, q_len, kv_len).
Array make_attention_mask(const Array& query_input, const Array& key_input,
                          const PairwiseFn& pairwise_fn = jnp::multiply,
                          int64_t extra_batch_dims = 0, DType dtype = DType::float32);
// (1..., batch..., 1, len, len) with mask[..., i, j] = (i >= j), for x (batch..., len).
Array make_causal_mask(const Array& x, int64_t extra_batch_dims = 0, DType dtype = DType::float32);
// Logical and of the masks given (std::nullopt entries skipped) as `dtype`; nullopt if none.
// The masks must have the same rank.
std::optional<Array> combine_masks(const std::vector<std::optional<Array>>& masks,
                                   DType dtype = DType::float32);

// Flax's attention_fn: (query, key, value, options) -> (batch..., q_len, heads, v_depth), called
// with the projected query/key/value and the mask, dropout settings and rng the layer decided.
using AttentionFn =
    std::function<Array(const Array&, const Array&, const Array&, const AttentionOptions&)>;

// MultiHeadDotProductAttention.__call__'s keyword-only arguments.
struct AttentionCall {
  std::optional<Array> mask = std::nullopt;
  std::optional<bool> deterministic = std::nullopt;
  std::optional<random::Key> dropout_rng = std::nullopt;  // default: make_rng("dropout")
};

struct MultiHeadDotProductAttention : Module<MultiHeadDotProductAttention> {
  int64_t num_heads = 0;
  std::optional<int64_t> qkv_features = std::nullopt;  // default: inputs_q's last axis
  std::optional<int64_t> out_features = std::nullopt;  // default: inputs_q's last axis
  bool broadcast_dropout = true;
  double dropout_rate = 0.0;
  std::optional<bool> deterministic = std::nullopt;
  Initializer kernel_init = initializers::lecun_normal();
  Initializer out_kernel_init = nullptr;  // empty: kernel_init
  Initializer bias_init = initializers::zeros;
  Initializer out_bias_init = nullptr;  // empty: bias_init
  bool use_bias = true;
  AttentionFn attention_fn = nullptr;  // empty: dot_product_attention
  bool decode = false;
  bool normalize_qk = false;  // LayerNorm (no bias) on query and key, as query_ln / key_ln

  // inputs_k defaults to inputs_q and inputs_v to inputs_k, as in Flax.
  Array operator()(Scope& s, const Array& inputs_q, const AttentionCall& call = {}) const;
  Array operator()(Scope& s, const Array& inputs_q, const Array& inputs_k,
                   const AttentionCall& call = {}) const;
  Array operator()(Scope& s, const Array& inputs_q, const Array& inputs_k, const Array& inputs_v,
                   const AttentionCall& call = {}) const;
};

// Flax's (deprecated) SelfAttention: MultiHeadDotProductAttention on inputs_q alone, autonamed
// SelfAttention_<n>. Same fields.
struct SelfAttention : Module<SelfAttention> {
  int64_t num_heads = 0;
  std::optional<int64_t> qkv_features = std::nullopt;
  std::optional<int64_t> out_features = std::nullopt;
  bool broadcast_dropout = true;
  double dropout_rate = 0.0;
  std::optional<bool> deterministic = std::nullopt;
  Initializer kernel_init = initializers::lecun_normal();
  Initializer out_kernel_init = nullptr;
  Initializer bias_init = initializers::zeros;
  Initializer out_bias_init = nullptr;
  bool use_bias = true;
  AttentionFn attention_fn = nullptr;
  bool decode = false;
  bool normalize_qk = false;

  Array operator()(Scope& s, const Array& inputs_q, const AttentionCall& call = {}) const;
};

}  // namespace flaxpp::nn
