// jax.random, bit-exact: threefry2x32 keys and JAX's float32 samplers.
//
//   namespace rnd = flaxpp::random;
//   rnd::Key key = rnd::PRNGKey(0);                   // key_data == [0, 0]
//   auto ks = rnd::split(key);                          // 2 keys (mode-dependent, see below)
//   Array x = rnd::normal(ks[1], {3, 4});               // float32 (3,4)
//   Array w = rnd::truncated_normal(ks[0], -2.f, 2.f, {256, 128});
//   Array i = rnd::randint(rnd::fold_in(key, 7), {5}, 0, 10);   // int32 in [0, 10)
//
// Every function equals its jax.random namesake with jax_enable_x64 off (float32 / int32),
// element for element, in the bit mode of bits_mode() (core/threefry.hpp): partitionable is
// JAX >= 0.5.0's default, legacy is JAX <= 0.4.38's. Spec: shared/reference/jax-random.md.
//
// Numerics follow current XLA:CPU: every float32 operation rounded once, no FMA contraction
// (build with -ffp-contract=off). erf_inv and erf are XLA's float32 polynomials;
// log1p is correctly rounded; log, exp, tan, pow, sqrt are float32 results of double evaluation.
// Integer paths (keys, bits, randint, bernoulli, permutation) and uniform on [0,1) and [-1,1)
// are exact on every backend; for the rest JAX's backends themselves differ by ~1 ulp.
//
// Shapes are row-major; a scalar draw is shape {}. Sizes are limited only by memory (legacy
// mode: fewer than 2^32-1 words per draw). Errors: std::invalid_argument naming the value.
#pragma once

#include <cstdint>
#include <vector>

#include "array.hpp"
#include "threefry.hpp"

namespace flaxpp::random {

// ---- keys ----
// jax.random.PRNGKey(seed) with x64 off: the seed wraps to its low 32 bits, key = [0, seed mod 2^32].
Key PRNGKey(int64_t seed);
Array key_data(Key key);  // uint32 (2,) = [k0, k1]
Key wrap_key_data(uint32_t k0, uint32_t k1);
std::vector<Key> split(Key key, int64_t num = 2);  // num >= 0; row-major like split(key, num)
Key fold_in(Key key, uint32_t data);               // block(key, (0, data)); mode-independent

// ---- bits ----
Array bits(Key key, const Shape& shape);  // uint32, jax.random.bits(key, shape, uint32)
// jax.random.bits with dtype uint8 / uint16 / uint32 (bit_width 8, 16, 32): the values, held
// zero-extended in a uint32 array (flaxpp has no narrow integer dtypes).
Array bits(Key key, const Shape& shape, int bit_width);

// ---- float32 samplers ----
Array uniform(Key key, const Shape& shape, float minval = 0.f, float maxval = 1.f);
Array normal(Key key, const Shape& shape);
// Standard normal truncated to the open interval (lower, upper); infinite bounds allowed.
Array truncated_normal(Key key, float lower, float upper, const Shape& shape);
Array bernoulli(Key key, float p, const Shape& shape);  // bool: uniform < p
// int32 in [minval, maxval); bounds are clipped to int32 as JAX does, so maxval = 2^31 gives
// the full range; maxval <= minval returns minval.
Array randint(Key key, const Shape& shape, int64_t minval, int64_t maxval);
Array permutation(Key key, int64_t n);  // int32 (n,): a shuffled arange(n)
// Gumbel-max: argmax(gumbel(key, logits.shape) + logits, axis), int32 of logits.shape without axis.
Array categorical(Key key, const Array& logits, int64_t axis = -1);

// Derived samplers, as jax.random (float32 unless noted).
Array exponential(Key key, const Shape& shape);
Array gumbel(Key key, const Shape& shape);
Array laplace(Key key, const Shape& shape);
Array logistic(Key key, const Shape& shape);
Array cauchy(Key key, const Shape& shape);
Array rademacher(Key key, const Shape& shape);  // int32, -1 or 1
Array maxwell(Key key, const Shape& shape);
Array double_sided_maxwell(Key key, float loc, float scale, const Shape& shape);
Array weibull_min(Key key, float scale, float concentration, const Shape& shape);
Array pareto(Key key, float b, const Shape& shape);

// ---- the float32 special functions the samplers use (exposed for tests) ----
float erf_inv_f32(float x);  // XLA/StableHLO ErfInv32 (Giles); erf_inv(+-1) = +-inf
float erf_f32(float x);      // StableHLO's float32 erf rational approximation
float log1p_f32(float x);    // correctly rounded float32 log1p

}  // namespace flaxpp::random
