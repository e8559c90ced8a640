// The vectorised kernels, compiled once per instruction set and chosen at run time.
//
//   const simd::Kernels& k = simd::kernels();    // the set this process uses
//   k.exp(x, y, n);                              // y[i] = exp(x[i]), any n
//   for (const simd::Kernels* s : simd::supported()) ...   // every set this CPU can run
//   simd::use("sse4_2");                         // switch (tests; FLAXPP_SIMD=sse4_2 likewise)
//
// Sets: on x86-64 "sse4_2" (x86-64-v2, the baseline every build runs on), "avx2" (x86-64-v3)
// and "avx512" (x86-64-v4: AVX-512 F/BW/DQ/VL); elsewhere one set, "native", for what the
// compiler targets (xsimd's neon64 on aarch64). The default is the widest set the CPU runs; FLAXPP_SIMD names
// another (read once, at the first kernel call; an unknown or unsupported name is an error).
//
// Same bits on every x86-64 set. Every kernel is lane-wise, a tail goes through the same vector
// code (padded), and the float arithmetic is the same on every set: no set fuses a*b+c (the
// xsimd arch types chosen have no FMA kernels, and the ISA files build with -ffp-contract=off),
// so a result never depends on the vector width. tests/core/simd/kernels_test.cpp checks each
// set against the baseline bit for bit. (aarch64's set is xsimd's neon64, whose polynomials use
// fused multiply-adds: exp, log, log1p, expm1, tanh and gelu may differ there in the last bit;
// the integer threefry and the random samplers do not.)
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace flaxpp::simd {

struct Kernels {
  const char* name;  // "sse4_2", "avx2", "avx512" or "native"
  int float_lanes;   // float32 lanes in one vector

  // y[i] = f(x[i]) for i < n (xsimd's algorithms, a few ulp; y may be x).
  void (*exp)(const float* x, float* y, int64_t n);
  void (*log)(const float* x, float* y, int64_t n);
  void (*log1p)(const float* x, float* y, int64_t n);
  void (*expm1)(const float* x, float* y, int64_t n);
  void (*tanh)(const float* x, float* y, int64_t n);
  // y[i] = scale * exp(x[i] - shift): softmax and its gradient against a row's logsumexp.
  void (*scaled_exp)(const float* x, float shift, float scale, float* y, int64_t n);
  // Tanh-approximate gelu, x * 0.5 (1 + tanh(k (x + c x^3))), and its vjp dx = g * d/dx.
  void (*gelu_tanh)(const float* x, float* y, int64_t n);
  void (*gelu_tanh_vjp)(const float* x, const float* g, float* dx, int64_t n);

  // ---- random (core/random.cpp, core/threefry.cpp; spec: shared/reference/jax-random.md) ----
  // Samplers over n random words, n a multiple of kWordPad (16) and at most kWordPiece + 16.
  void (*uniform)(const uint32_t* words, float* out, int64_t n, float minval, float maxval);
  void (*normal)(const uint32_t* words, float* out, int64_t n);
  // sqrt(2) erf_inv(uniform(a, b)), clipped to [lo, hi].
  void (*truncated_normal)(const uint32_t* words, float* out, int64_t n, float a, float b, float lo,
                           float hi);
  // In place over a padded buffer, as above: XLA's float32 erf_inv; correctly rounded log1p
  // (its buffer 64-byte aligned).
  void (*erf_inv)(float* x, int64_t n);
  void (*log1p_correct)(float* x, int64_t n);
  // Threefry-2x32: out[i] = y0 ^ y1 of block(key, (hi32(begin + i), lo32(begin + i))), for a
  // range that does not cross a multiple of 2^32.
  void (*threefry_counter)(uint32_t k0, uint32_t k1, uint64_t begin, int64_t count, uint32_t* out);
  // (y0[i], y1[i]) = block(key, (x0[i], x1[i])) for i < count (any count).
  void (*threefry_pairs)(uint32_t k0, uint32_t k1, const uint32_t* x0, const uint32_t* x1,
                         uint32_t* y0, uint32_t* y1, int64_t count);
  // As threefry_pairs with x0[i] = first0 + i, x1[i] = first1 + i (legacy bits' iota halves).
  void (*threefry_iota)(uint32_t k0, uint32_t k1, uint32_t first0, uint32_t first1, uint32_t* y0,
                        uint32_t* y1, int64_t count);
};

const Kernels& kernels();                     // the set in use
std::span<const Kernels* const> supported();  // the sets this CPU runs, baseline first
// Switches every thread to the named set; std::invalid_argument naming the set and listing the
// supported ones when this CPU cannot run it.
void use(std::string_view name);

}  // namespace flaxpp::simd
