#include "models/gmlp.hpp"

#include <cmath>

#include "core/ops.hpp"
#include "nn/losses.hpp"

namespace flaxpp::models {

Array Residual::operator()(nn::Scope& s, const Array& x0) const {
  Array x = x0;
  for (size_t i = 0; i < layers.size(); ++i) x = s.call("layers", i, layers[i], x) + x;
  return x;
}

Array PreNorm::operator()(nn::Scope& s, const Array& x0) const {
  auto norm = s.child("norm", nn::LayerNorm{});
  Array x = x0;
  for (size_t i = 0; i < layers.size(); ++i) x = s.call("layers", i, layers[i], norm(x));
  return x;
}

namespace {
// -1e10 above the diagonal (j > i) of the last two axes, as gmlp_flax's causal mask.
Array causal_mask_fill(const Array& sim) {
  int64_t n = sim.shape()[sim.ndim() - 2], m = sim.shape().back();
  Array above =
      jnp::greater(jnp::reshape(jnp::arange(m), {1, m}), jnp::reshape(jnp::arange(n), {n, 1}));
  return jnp::where(above, Array(-1e10f), sim);
}
}  // namespace

Array Attention::operator()(nn::Scope& s, const Array& x) const {
  if (x.ndim() < 2) s.fail("expected (..., n, d) activations, got " + to_string(x.shape()));
  auto qkv = jnp::split(s.call("to_qkv", nn::Dense{.features = 3 * dim_head}, x), 3, -1);
  const Array &q = qkv[0], &k = qkv[1], &v = qkv[2];
  Array sim = jnp::matmul(q, jnp::swapaxes(k, -1, -2)) *
              static_cast<float>(std::pow(static_cast<double>(dim_head), -0.5));
  if (causal) sim = causal_mask_fill(sim);
  Array attn = jnp::softmax(sim, -1);
  return s.call("to_out", nn::Dense{.features = dim_out}, jnp::matmul(attn, v));
}

namespace {
// A causal model accepts any length up to seq_len (its spatial weights are sliced); a non-causal
// one exactly seq_len.
void check_sequence_length(const nn::Scope& s, int64_t length, int64_t seq_len, bool causal) {
  if (causal && length > seq_len)
    s.fail("sequence length " + std::to_string(length) + " exceeds seq_len " +
           std::to_string(seq_len) + " (a causal model accepts any length <= seq_len)");
  if (!causal && length != seq_len)
    s.fail("a non-causal model needs sequence length == seq_len " + std::to_string(seq_len) +
           ", got " + std::to_string(length));
}
}  // namespace

Array SpatialGatingUnit::operator()(nn::Scope& s, const Array& x,
                                    const std::optional<Array>& gate_res) const {
  if (x.shape().back() % 2 != 0)
    s.fail("the last axis must be even to split into (x, gate), got " + to_string(x.shape()));
  auto halves = jnp::split(x, 2, -1);
  Array u = halves[0];
  Array gate = s.call("norm", nn::LayerNorm{}, halves[1]);
  if (seq_len) {
    int64_t n = *seq_len;
    if (gate.ndim() < 2)
      s.fail("spatial gating needs (..., L, d) activations, got " + to_string(gate.shape()));
    int64_t L = gate.shape()[gate.ndim() - 2];
    // The paper's near-identity init: W ~ U[-eps/n, eps/n), bias = 1 (float32(1e-3 / n) as JAX
    // rounds a Python float).
    float bound = static_cast<float>(1e-3 / static_cast<double>(n));
    Array w = s.param("spatial_weights",
                      [bound](random::Key k, const Shape& shape, DType) {
                        return random::uniform(k, shape, -bound, bound);
                      },
                      {n, n});
    Array b = s.param("spatial_biases", nn::initializers::ones, {n, 1});
    check_sequence_length(s, L, n, causal);
    if (causal) {
      if (L < n) {
        w = jnp::slice(jnp::slice(w, 0, 0, L), 1, 0, L);
        b = jnp::slice(b, 0, 0, L);
      }
      w = jnp::tril(w);
    }
    gate = jnp::matmul(w, gate) + b;
  }
  if (gate_res) gate = gate + *gate_res;
  Array y = u * gate;
  return use_proj_out ? s.call("proj_out", nn::Dense{.features = dim_out}, y) : y;
}

Array gMLPBlock::operator()(nn::Scope& s, const Array& x) const {
  std::optional<Array> gate_res;
  if (attn_dim)
    gate_res = s.call("attn",
                      Attention{.dim_out = dim_ff / 2, .dim_head = *attn_dim, .causal = causal}, x);
  Array h = nn::gelu(s.call("proj_in", nn::Dense{.features = dim_ff}, x));
  h = s.call("sgu", SpatialGatingUnit{.dim_out = dim_ff / 2, .seq_len = seq_len, .causal = causal},
             h, gate_res);
  return s.call("proj_out", nn::Dense{.features = dim}, h);
}

Array gMLP::operator()(nn::Scope& s, const Array& input) const {
  if (dim <= 0 || depth < 0 || ff_mult <= 0)
    s.fail("dim and ff_mult must be positive and depth >= 0, got dim=" + std::to_string(dim) +
           " depth=" + std::to_string(depth) + " ff_mult=" + std::to_string(ff_mult));
  Array x = input;
  if (num_tokens) {
    if (input.dtype() != DType::int32 || (input.ndim() != 1 && input.ndim() != 2))
      s.fail(std::string("expected int32 tokens of shape (L,) or (B, L), got ") +
             dtype_name(input.dtype()) + " " + to_string(input.shape()));
    x = s.call("to_embed", nn::Embed{.num_embeddings = *num_tokens, .features = dim}, input);
  } else if (!input.is_float() || input.ndim() < 2 || input.shape().back() != dim) {
    s.fail("without num_tokens the input must be float32 (..., L, " + std::to_string(dim) +
           "), got " + dtype_name(input.dtype()) + " " + to_string(input.shape()));
  }
  // Checked here too, so a wrong length fails at the model before any layer runs.
  if (seq_len) check_sequence_length(s, x.shape()[x.ndim() - 2], *seq_len, causal);
  int64_t dim_ff = dim * ff_mult;
  for (int64_t i = 0; i < depth; ++i) {
    gMLPBlock block{
        .dim = dim, .dim_ff = dim_ff, .attn_dim = attn_dim, .seq_len = seq_len, .causal = causal};
    Residual layer{.layers = {PreNorm{.layers = {block}}}};
    x = s.call("layers", static_cast<size_t>(i), layer, x);
  }
  if (num_tokens)
    x = s.call("to_logits",
               nn::Sequential{.layers = {nn::LayerNorm{}, nn::Dense{.features = *num_tokens}}}, x);
  return x;
}

// ---- vision ---------------------------------------------------------------------------------

namespace {
struct VisionBlock : nn::Module<VisionBlock> {
  int64_t dim = 0, dim_ff = 0, num_patches = 0;
  Array operator()(nn::Scope& s, const Array& x) const {
    Array h = s.call("norm", nn::LayerNorm{}, x);
    h = nn::gelu(s.call("proj_in", nn::Dense{.features = dim_ff}, h));
    h = s.call(
        "sgu",
        SpatialGatingUnit{
            .dim_out = dim_ff / 2, .seq_len = num_patches, .causal = false, .use_proj_out = false},
        h);
    return s.call("proj_out", nn::Dense{.features = dim}, h);
  }
};
}  // namespace

Array gMLPVision::operator()(nn::Scope& s, const Array& images, bool deterministic) const {
  if (!images.is_float() || images.ndim() != 4 || images.shape()[1] != image_size ||
      images.shape()[2] != image_size)
    s.fail("expected float32 images (B, " + std::to_string(image_size) + ", " +
           std::to_string(image_size) + ", C), got " + dtype_name(images.dtype()) + " " +
           to_string(images.shape()));
  if (image_size % patch_size != 0)
    s.fail("image_size " + std::to_string(image_size) + " is not a multiple of patch_size " +
           std::to_string(patch_size));
  if (survival_prob <= 0 || survival_prob > 1)
    s.fail("survival_prob must be in (0, 1], got " + std::to_string(survival_prob));
  int64_t B = images.shape()[0], C = images.shape()[3], g = image_size / patch_size, p = patch_size;
  // (B, g, p, g, p, C) -> (B, g, g, p, p, C) -> (B, g*g, p*p*C)
  Array patches =
      jnp::reshape(jnp::transpose(jnp::reshape(images, {B, g, p, g, p, C}), {0, 1, 3, 2, 4, 5}),
                   {B, g * g, p * p * C});
  Array x = s.call("stem", nn::Dense{.features = dim}, patches);
  float keep = static_cast<float>(survival_prob);
  for (int64_t i = 0; i < depth; ++i) {
    Array h = s.call("blocks", static_cast<size_t>(i),
                     VisionBlock{.dim = dim, .dim_ff = ff_mult * dim, .num_patches = g * g}, x);
    if (!deterministic && survival_prob < 1.0) {
      Array alive = random::bernoulli(s.make_rng("dropout"), keep, {B, 1, 1});
      h = jnp::where(alive, h / keep, Array(0.f));
    }
    x = x + h;
  }
  x = jnp::mean(s.call("norm", nn::LayerNorm{}, x), {1});
  return s.call("head", nn::Dense{.features = num_classes}, x);
}

gMLPVision gmlp_vision_ti(int64_t num_classes) { return {.num_classes = num_classes, .dim = 128}; }
gMLPVision gmlp_vision_s(int64_t num_classes) { return {.num_classes = num_classes, .dim = 256}; }
gMLPVision gmlp_vision_b(int64_t num_classes) { return {.num_classes = num_classes, .dim = 512}; }

Array next_token_loss(const Array& logits, const Array& tokens) {
  if (tokens.dtype() != DType::int32)
    throw std::invalid_argument("next_token_loss: tokens must be int32");
  Array lg = logits.ndim() == 2 ? jnp::expand_dims(logits, 0) : logits;
  Array tk = tokens.ndim() == 1 ? jnp::expand_dims(tokens, 0) : tokens;
  if (lg.ndim() != 3 || tk.ndim() != 2 || lg.shape()[0] != tk.shape()[0] ||
      lg.shape()[1] != tk.shape()[1])
    throw std::invalid_argument("next_token_loss: logits " + to_string(logits.shape()) +
                                " do not match tokens " + to_string(tokens.shape()));
  int64_t L = tk.shape()[1];
  if (L < 2)
    throw std::invalid_argument("next_token_loss: need at least 2 tokens, got " +
                                std::to_string(L));
  // Cross-entropy at every position against the next token, then the mean over positions
  // 0..L-2: the same numbers as slicing logits[:, :-1] first, without copying the (B, L, V)
  // logits (80 MB for the README model). The last position's label is a placeholder (0); its loss
  // is dropped, so its gradient row is exactly zero.
  int64_t B = tk.shape()[0];
  Array next = Array::empty({B, L}, DType::int32);
  const int32_t* pt = tk.data<int32_t>();
  int32_t* pn = next.mutable_data<int32_t>();
  for (int64_t b = 0; b < B; ++b) {
    std::copy(pt + b * L + 1, pt + (b + 1) * L, pn + b * L);
    pn[b * L + L - 1] = 0;
  }
  Array losses = optax::softmax_cross_entropy_with_integer_labels(lg, next);  // (B, L)
  return jnp::mean(jnp::slice(losses, 1, 0, L - 1));
}

}  // namespace flaxpp::models
