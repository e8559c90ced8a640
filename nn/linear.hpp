// Dense, DenseGeneral and Embed, as flax.linen.Dense / DenseGeneral / Embed.
//
//   Array y = s(nn::Dense{.features = 128}, x);          // x (..., in) -> (..., 128)
//   // params: kernel (in, 128) lecun_normal, bias (128,) zeros; keys from counters 1 and 2
//   Array e = s.call("to_embed", nn::Embed{.num_embeddings = 20000, .features = 512}, ids);
//   // ids int32 of any shape -> ids.shape + (512,); embedding (20000, 512) ~ N(0, 1/512)
//   Array logits = s.child("to_embed", embed).method(&nn::Embed::attend, q);  // q @ embedding.T
//   Array q = s.call("query", nn::DenseGeneral{.features = {8, 16}}, x);  // (..., 8, 16)
//   // kernel (in, 8, 16), bias (8, 16). kernel_init sees the flattened (in, 8 * 16) shape and its
//   // result is reshaped, as Flax does, so fans are those of the (in, out) matrix.
//   nn::DenseGeneral{.features = {5}, .axis = {1, -1}}      // contracts axes 1 and -1 (sorted)
//   nn::DenseGeneral{.features = {5}, .batch_dims = {0}}    // a kernel per index of axis 0:
//   // x (B, n, in) -> (B, n, 5), kernel (B, in, 5), bias (B, 5); init on (B * in, 5) flattened
//
// DenseGeneral's output axes are batch_dims, then the other non-contracted axes in order, then
// `features` (lax.dot_general's order). batch_dims must be the leading axes 0..k-1.
//
// Errors (ModuleError, naming the module path): non-float or rank-0 input to Dense, a last axis
// that differs from the kernel's; for DenseGeneral an axis out of range or repeated, batch_dims
// that are not the leading axes or overlap `axis`, empty or non-positive features; for Embed
// non-integer ids, ids outside [-N, N) (negative ids in [-N, 0) wrap as in JAX; we do not
// reproduce JAX's NaN fill / clamping for the rest).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "module.hpp"

namespace flaxpp::nn {

struct Dense : Module<Dense> {
  int64_t features = 0;
  bool use_bias = true;
  Initializer kernel_init = initializers::lecun_normal();
  Initializer bias_init = initializers::zeros;

  Array operator()(Scope& s, const Array& x) const;
};

struct DenseGeneral : Module<DenseGeneral> {
  std::vector<int64_t> features;         // Flax: int or tuple; here always a list
  std::vector<int64_t> axis = {-1};      // input axes to contract (negative count from the end)
  std::vector<int64_t> batch_dims = {};  // leading axes with a kernel each
  bool use_bias = true;
  Initializer kernel_init = initializers::lecun_normal();
  Initializer bias_init = initializers::zeros;

  Array operator()(Scope& s, const Array& x) const;
};

// flax.linen.Einsum: y = einsum(einsum_str, x, kernel) + bias, kernel of the given `shape`
// (kernel_init sees that shape as it is, no flattening), bias shaped by the kernel axes that
// reach the output:
//   nn::Einsum{.shape = {5, 6, 7}, .einsum_str = "abc,cde->abde"} on (3, 4, 5)
//   // -> kernel (5, 6, 7), bias (6, 7), output (3, 4, 6, 7)
// einsum_str is set on the struct or passed at the call, exactly one of them.
struct Einsum : Module<Einsum> {
  std::vector<int64_t> shape;
  std::optional<std::string> einsum_str = std::nullopt;
  bool use_bias = true;
  Initializer kernel_init = initializers::lecun_normal();
  Initializer bias_init = initializers::zeros;

  Array operator()(Scope& s, const Array& x,
                   const std::optional<std::string>& einsum_str = std::nullopt) const;
};

// jnp.einsum for two operands, "ab,bc->ac" style with an explicit "->": labels shared by both
// operands and the output are batch axes, shared ones absent from the output are contracted,
// labels of one operand absent from the output are summed first; "..." stands for the leading
// axes an operand has beyond its letters. Built from transpose, reshape, sum and one batched
// matmul, so it is differentiable. Throws std::invalid_argument naming the equation and shapes
// for malformed equations, repeated labels in one operand and size mismatches.
Array einsum(const std::string& equation, const Array& a, const Array& b);

struct Embed : Module<Embed> {
  int64_t num_embeddings = 0;
  int64_t features = 0;
  Initializer embedding_init = initializers::variance_scaling(1.0, "fan_in", "normal", {-2}, {0});

  Array operator()(Scope& s, const Array& ids) const;
  // Flax's Embed.attend: query (..., features) @ embedding.T -> (..., num_embeddings).
  Array attend(Scope& s, const Array& query) const;

 private:
  Array embedding(Scope& s) const;
};

}  // namespace flaxpp::nn
