// Dense and Embed, as flax.linen.Dense / flax.linen.Embed.
//
//   Array y = s(nn::Dense{.features = 128}, x);          // x (..., in) -> (..., 128)
//   // params: kernel (in, 128) lecun_normal, bias (128,) zeros; keys from counters 1 and 2
//   Array e = s.call("to_embed", nn::Embed{.num_embeddings = 20000, .features = 512}, ids);
//   // ids int32 of any shape -> ids.shape + (512,); embedding (20000, 512) ~ N(0, 1/512)
//   Array logits = s.child("to_embed", embed).method(&nn::Embed::attend, q);  // q @ embedding.T
//
// Errors (ModuleError, naming the module path): non-float or rank-0 input to Dense, a last axis
// that differs from the kernel's, non-integer ids, ids outside [-N, N) (negative ids in [-N, 0)
// wrap as in JAX; we do not reproduce JAX's NaN fill / clamping for the rest).
#pragma once

#include "module.hpp"

namespace flaxpp::nn {

struct Dense : Module<Dense> {
  int64_t features = 0;
  bool use_bias = true;
  Initializer kernel_init = initializers::lecun_normal();
  Initializer bias_init = initializers::zeros;

  Array operator()(Scope& s, const Array& x) const;
};

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
