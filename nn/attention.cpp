#include "nn/attention.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "nn/linear.hpp"
#include "nn/normalization.hpp"

namespace flaxpp::nn {

namespace {

[[noreturn]] void bad(const char* fn, const std::string& message) {
  throw std::invalid_argument(std::string(fn) + ": " + message);
}

std::string shapes(std::initializer_list<std::pair<const char*, const Array*>> named) {
  std::string r;
  for (auto [name, a] : named)
    r += (r.empty() ? "" : ", ") + std::string(name) + " " + to_string(a->shape());
  return r;
}

Shape leading(const Array& a, size_t drop) {  // a.shape[:-drop]
  Shape r;
  for (size_t i = 0; i + drop < a.ndim(); ++i) r.push_back(a.shape()[i]);
  return r;
}

void check_qk(const char* fn, const Array& q, const Array& k) {
  auto both = [&] { return shapes({{"query", &q}, {"key", &k}}); };
  if (!q.is_float() || !k.is_float()) bad(fn, "query and key must be float32, got " + both());
  if (q.ndim() < 3 || q.ndim() != k.ndim())
    bad(fn, "query and key must have the same rank >= 3 (batch..., length, heads, depth), got " +
                both());
  if (leading(q, 3) != leading(k, 3)) bad(fn, "query and key batch dims must match, got " + both());
  if (q.shape()[q.ndim() - 2] != k.shape()[k.ndim() - 2])
    bad(fn, "query and key num_heads must match, got " + both());
  if (q.shape().back() != k.shape().back())
    bad(fn, "query and key depths must match, got " + both());
}

// Swaps the (length, heads) axes of a (batch..., length, heads, depth) array.
Array heads_first(const Array& a) { return jnp::swapaxes(a, -3, -2); }

// `extra` must broadcast to `target` without enlarging it (Flax's bias and mask contract).
void check_broadcasts(const char* fn, const char* what, const Array& extra, const Shape& target) {
  bool ok = true;
  try {
    ok = broadcast_shapes(extra.shape(), target, fn) == target;
  } catch (const std::invalid_argument&) {
    ok = false;
  }
  if (!ok)
    bad(fn, std::string(what) + " of shape " + to_string(extra.shape()) +
                " does not broadcast to the weights' " + to_string(target));
}

Array logical_and(const Array& a, const Array& b) {
  return jnp::where(jnp::astype(a, DType::bool_), jnp::astype(b, DType::bool_), Array(false));
}

}  // namespace

Array dot_product_attention_weights(const Array& query, const Array& key,
                                    const AttentionOptions& o) {
  const char* fn = "dot_product_attention_weights";
  check_qk(fn, query, key);
  // float32 sqrt of the depth, as jnp.sqrt(depth).astype(dtype); the query is scaled first.
  float scale = std::sqrt(static_cast<float>(query.shape().back()));
  Array q = heads_first(query / scale);                // (batch..., heads, q_len, depth)
  Array kt = jnp::swapaxes(heads_first(key), -2, -1);  // (batch..., heads, depth, kv_len)
  Array w = jnp::matmul(q, kt);                        // (batch..., heads, q_len, kv_len)
  if (o.bias) {
    check_broadcasts(fn, "bias", *o.bias, w.shape());
    w = w + *o.bias;
  }
  if (o.mask) {
    check_broadcasts(fn, "mask", *o.mask, w.shape());
    w = jnp::where(*o.mask, w, Array(std::numeric_limits<float>::lowest()));  // jnp.finfo(f32).min
  }
  w = jnp::softmax(w, -1);
  if (!o.deterministic && o.dropout_rate > 0.0) {
    if (o.dropout_rate > 1.0)
      bad(fn, "dropout_rate must be in [0, 1], got " + std::to_string(o.dropout_rate));
    if (!o.dropout_rng) bad(fn, "dropout_rate > 0 and deterministic = false need a dropout_rng");
    float keep_prob = static_cast<float>(1.0 - o.dropout_rate);
    Shape drop_shape = w.shape();
    if (o.broadcast_dropout)  // one (q_len, kv_len) mask shared by the batch and head axes
      for (size_t i = 0; i + 2 < drop_shape.size(); ++i) drop_shape[i] = 1;
    Array keep = random::bernoulli(*o.dropout_rng, keep_prob, drop_shape);
    w = w * (jnp::astype(keep, DType::float32) / Array(keep_prob));
  }
  return w;
}

Array dot_product_attention(const Array& query, const Array& key, const Array& value,
                            const AttentionOptions& o) {
  const char* fn = "dot_product_attention";
  check_qk(fn, query, key);
  auto all = [&] { return shapes({{"query", &query}, {"key", &key}, {"value", &value}}); };
  if (!value.is_float() || value.ndim() != key.ndim())
    bad(fn, "value must be float32 of the rank of key, got " + all());
  if (leading(value, 3) != leading(key, 3))
    bad(fn, "query, key and value batch dims must match, got " + all());
  size_t n = value.ndim();
  if (value.shape()[n - 2] != key.shape()[n - 2])
    bad(fn, "key and value num_heads must match, got " + all());
  if (value.shape()[n - 3] != key.shape()[n - 3])
    bad(fn, "key and value lengths must match, got " + all());
  Array w = dot_product_attention_weights(query, key, o);  // (batch..., heads, q_len, kv_len)
  return heads_first(jnp::matmul(w, heads_first(value)));  // (batch..., q_len, heads, v_depth)
}

Array make_attention_mask(const Array& query_input, const Array& key_input,
                          const PairwiseFn& pairwise_fn, int64_t extra_batch_dims, DType dtype) {
  if (extra_batch_dims < 0)
    bad("make_attention_mask",
        "extra_batch_dims must be >= 0, got " + std::to_string(extra_batch_dims));
  Array mask = pairwise_fn(jnp::expand_dims(query_input, -1), jnp::expand_dims(key_input, -2));
  mask = jnp::expand_dims(mask, -3);
  for (int64_t i = 0; i < extra_batch_dims; ++i) mask = jnp::expand_dims(mask, 0);
  return jnp::astype(mask, dtype);
}

Array make_causal_mask(const Array& x, int64_t extra_batch_dims, DType dtype) {
  if (x.ndim() == 0) bad("make_causal_mask", "x must have rank >= 1 (batch..., len), got shape ()");
  Array idxs = jnp::broadcast_to(jnp::arange(x.shape().back()), x.shape());
  return make_attention_mask(idxs, idxs, jnp::greater_equal, extra_batch_dims, dtype);
}

std::optional<Array> combine_masks(const std::vector<std::optional<Array>>& masks, DType dtype) {
  std::vector<Array> given;
  for (const auto& m : masks)
    if (m) given.push_back(*m);
  if (given.empty()) return std::nullopt;
  for (const Array& m : given)
    if (m.ndim() != given[0].ndim()) {
      std::string ranks;
      for (const Array& g : given) ranks += (ranks.empty() ? "" : ", ") + std::to_string(g.ndim());
      bad("combine_masks", "masks must have the same rank, got ranks (" + ranks + ")");
    }
  Array mask = jnp::astype(given[0], DType::bool_);
  for (size_t i = 1; i < given.size(); ++i) mask = logical_and(mask, given[i]);
  return jnp::astype(mask, dtype);
}

// ---- MultiHeadDotProductAttention ----------------------------------------------------------

Array MultiHeadDotProductAttention::operator()(Scope& s, const Array& inputs_q,
                                               const AttentionCall& call) const {
  return (*this)(s, inputs_q, inputs_q, inputs_q, call);
}

Array MultiHeadDotProductAttention::operator()(Scope& s, const Array& inputs_q,
                                               const Array& inputs_k,
                                               const AttentionCall& call) const {
  return (*this)(s, inputs_q, inputs_k, inputs_k, call);
}

Array MultiHeadDotProductAttention::operator()(Scope& s, const Array& inputs_q,
                                               const Array& inputs_k, const Array& inputs_v,
                                               const AttentionCall& call) const {
  for (auto [name, a] :
       {std::pair{"inputs_q", &inputs_q}, {"inputs_k", &inputs_k}, {"inputs_v", &inputs_v}})
    if (!a->is_float() || a->ndim() < 2)
      s.fail(std::string(name) +
             " must be float32 of rank >= 2 (batch..., length, features), got " +
             dtype_name(a->dtype()) + " " + to_string(a->shape()));
  if (leading(inputs_k, 2) != leading(inputs_q, 2) || leading(inputs_v, 2) != leading(inputs_q, 2))
    s.fail("inputs_q, inputs_k and inputs_v batch dims must match, got " +
           shapes({{"inputs_q", &inputs_q}, {"inputs_k", &inputs_k}, {"inputs_v", &inputs_v}}));
  if (num_heads <= 0) s.fail("num_heads must be positive, got " + std::to_string(num_heads));
  int64_t features = out_features.value_or(inputs_q.shape().back());
  int64_t qkv = qkv_features.value_or(inputs_q.shape().back());
  if (qkv <= 0 || qkv % num_heads != 0)
    s.fail("qkv_features (" + std::to_string(qkv) + ") must be divisible by num_heads (" +
           std::to_string(num_heads) + ")");
  int64_t head_dim = qkv / num_heads;

  DenseGeneral dense{.features = {num_heads, head_dim},
                     .axis = {-1},
                     .use_bias = use_bias,
                     .kernel_init = kernel_init,
                     .bias_init = bias_init};
  // (batch..., length, num_heads, head_dim) each.
  Array query = s.call("query", dense, inputs_q);
  Array key = s.call("key", dense, inputs_k);
  Array value = s.call("value", dense, inputs_v);
  if (normalize_qk) {  // ViT-22B's QK normalisation
    query = s.call("query_ln", LayerNorm{.use_bias = false}, query);
    key = s.call("key_ln", LayerNorm{.use_bias = false}, key);
  }

  std::optional<Array> mask = call.mask;
  if (decode) {
    bool is_initialized = s.has_variable("cache", "cached_key");
    Array cached_key = s.variable("cache", "cached_key", [&] { return jnp::zeros(key.shape()); });
    Array cached_value =
        s.variable("cache", "cached_value", [&] { return jnp::zeros(value.shape()); });
    Array cache_index =
        s.variable("cache", "cache_index", [] { return jnp::zeros({}, DType::int32); });
    if (is_initialized) {
      const Shape& cs = cached_key.shape();
      size_t n = cs.size();
      int64_t max_length = cs[n - 3];
      Shape expected = leading(cached_key, 3);
      expected.push_back(1);
      expected.push_back(cs[n - 2]);
      expected.push_back(cs[n - 1]);
      if (query.shape() != expected)
        s.fail("autoregressive cache shape error: expected query shape " + to_string(expected) +
               " (one position) from the cache " + to_string(cs) + ", got " +
               to_string(query.shape()));
      int32_t cur = cache_index.item<int32_t>();
      if (cur < 0 || cur >= max_length)
        s.fail("the decode cache is full: cache_index " + std::to_string(cur) + ", max_length " +
               std::to_string(max_length));
      // lax.dynamic_update_slice at position `cur` of the length axis, as a select: O(max_length).
      Array at_cur =
          jnp::reshape(jnp::equal(jnp::arange(max_length), Array(cur)), {max_length, 1, 1});
      key = jnp::where(at_cur, key, cached_key);
      value = jnp::where(at_cur, value, cached_value);
      s.put_variable("cache", "cached_key", key);
      s.put_variable("cache", "cached_value", value);
      s.put_variable("cache", "cache_index", cache_index + Array(int32_t{1}));
      // The single query attends to the positions written so far, not the zeros after them.
      Shape mshape = leading(cached_key, 3);
      mshape.push_back(1);
      mshape.push_back(1);
      mshape.push_back(max_length);
      Array filled =
          jnp::broadcast_to(jnp::less_equal(jnp::arange(max_length), Array(cur)), mshape);
      mask = combine_masks({mask, filled});
    }
  }

  bool deterministic_now = true;
  std::optional<random::Key> dropout_rng = call.dropout_rng;
  if (dropout_rate > 0.0) {  // `deterministic` is required only with dropout (Flax's merge_param)
    if (deterministic.has_value() == call.deterministic.has_value())
      s.fail(deterministic ? "deterministic is set both on the module and at the call"
                           : "deterministic must be set on the module or at the call");
    deterministic_now = deterministic ? *deterministic : *call.deterministic;
    if (!deterministic_now && !dropout_rng) dropout_rng = s.make_rng("dropout");
  }
  Array x;
  try {
    const AttentionFn& fn = attention_fn ? attention_fn : AttentionFn(dot_product_attention);
    x = fn(query, key, value,
           {.mask = mask,
            .broadcast_dropout = broadcast_dropout,
            .dropout_rng = dropout_rng,
            .dropout_rate = dropout_rate,
            .deterministic = deterministic_now});
  } catch (const std::invalid_argument& e) {
    s.fail(e.what());
  }
  // Back to (batch..., length, out_features), contracting (heads, head_dim).
  DenseGeneral out{.features = {features},
                   .axis = {-2, -1},
                   .use_bias = use_bias,
                   .kernel_init = out_kernel_init ? out_kernel_init : kernel_init,
                   .bias_init = out_bias_init ? out_bias_init : bias_init};
  return s.call("out", out, x);
}

Array SelfAttention::operator()(Scope& s, const Array& inputs_q, const AttentionCall& call) const {
  MultiHeadDotProductAttention mha{.num_heads = num_heads,
                                   .qkv_features = qkv_features,
                                   .out_features = out_features,
                                   .broadcast_dropout = broadcast_dropout,
                                   .dropout_rate = dropout_rate,
                                   .deterministic = deterministic,
                                   .kernel_init = kernel_init,
                                   .out_kernel_init = out_kernel_init,
                                   .bias_init = bias_init,
                                   .out_bias_init = out_bias_init,
                                   .use_bias = use_bias,
                                   .attention_fn = attention_fn,
                                   .decode = decode,
                                   .normalize_qk = normalize_qk};
  return mha(s, inputs_q, call);  // in this module's own scope, as Flax's super().__call__
}

}  // namespace flaxpp::nn
