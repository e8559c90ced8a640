// The bodies of simd::Kernels, written once over an xsimd arch type. Each core/simd/isa_*.cpp
// defines FLAXPP_SIMD_ISA (its namespace and set name), FLAXPP_SIMD_ARCH (the xsimd arch) and
// optionally FLAXPP_SIMD_ROTATE (256: AVX2 byte-shuffle rotations, 512: AVX-512F's vprold),
// then includes this file.
//
// Everything sits in flaxpp::simd::FLAXPP_SIMD_ISA and calls nothing inline from outside it
// but xsimd's arch-typed templates and memcpy: no inline function is shared between files built
// for different -march levels (scripts/isa_check verifies that on the objects).
#ifndef FLAXPP_SIMD_ISA
#error "define FLAXPP_SIMD_ISA and FLAXPP_SIMD_ARCH before including kernels_impl.hpp"
#endif

#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>

#include <xsimd/xsimd.hpp>

#include "core/simd/kernels.hpp"
#include "core/simd/threefry_block.hpp"

namespace flaxpp::simd::FLAXPP_SIMD_ISA {

using Arch = FLAXPP_SIMD_ARCH;
using F32 = xsimd::batch<float, Arch>;
using F64 = xsimd::batch<double, Arch>;
using U32 = xsimd::batch<uint32_t, Arch>;
using U64 = xsimd::batch<uint64_t, Arch>;
using I64 = xsimd::batch<int64_t, Arch>;
constexpr int64_t L = static_cast<int64_t>(F32::size);
constexpr int64_t kPad = 16;           // threefry.hpp's kWordPad
constexpr int64_t kBuf = 2048 + kPad;  // kWordPiece + kWordPad
static_assert(kPad % L == 0 && kPad % static_cast<int64_t>(F64::size) == 0 && L <= 16);

}  // namespace flaxpp::simd::FLAXPP_SIMD_ISA

#if defined(FLAXPP_SIMD_ROTATE) && FLAXPP_SIMD_ROTATE == 512
// AVX-512F rotates 32-bit lanes in one instruction.
template <>
struct flaxpp::simd::Rotate<flaxpp::simd::FLAXPP_SIMD_ISA::U32> {
  using U32 = FLAXPP_SIMD_ISA::U32;
  template <int R>
  static U32 left(const U32& x) {
    return U32(_mm512_rol_epi32(x, R));
  }
};
#elif defined(FLAXPP_SIMD_ROTATE) && FLAXPP_SIMD_ROTATE == 256
// Whole-byte rotations as one byte shuffle instead of two shifts and an or: AVX2 has one shift
// port, and the shifts are what bounds the threefry loop.
template <>
struct flaxpp::simd::Rotate<flaxpp::simd::FLAXPP_SIMD_ISA::U32> {
  using U32 = FLAXPP_SIMD_ISA::U32;
  template <int R>
  static U32 left(const U32& x) {
    if constexpr (R == 16 || R == 24) {
      const __m256i bytes =
          R == 16 ? _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0,
                                     1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13)
                  : _mm256_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12, 1, 2, 3,
                                     0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12);
      return U32(_mm256_shuffle_epi8(x, bytes));
    }
    return (x << R) | (x >> (32 - R));
  }
};
#endif

namespace flaxpp::simd::FLAXPP_SIMD_ISA {

// ---- float32 maps ------------------------------------------------------------------------------

// A NaN result is the input's NaN (quieted) when the input is NaN, else the default quiet NaN,
// as libm does: xsimd's AVX-512 and SSE code otherwise differ in the sign bit of NaNs.
inline F32 nan_as_libm(F32 in, F32 out) {
  const F32 nan(std::numeric_limits<float>::quiet_NaN());
  return xsimd::select(xsimd::isnan(out), xsimd::select(xsimd::isnan(in), in + in, nan), out);
}

// y = f(x) a vector at a time; the tail is padded with zeros and goes through the same code.
template <class F>
inline void map1(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  auto g = [&](F32 v) { return nan_as_libm(v, f(v)); };
  for (; i + L <= n; i += L) g(F32::load_unaligned(x + i)).store_unaligned(y + i);
  if (i < n) {
    alignas(64) float t[L] = {};
    std::memcpy(t, x + i, static_cast<size_t>(n - i) * sizeof(float));
    g(F32::load_aligned(t)).store_aligned(t);
    std::memcpy(y + i, t, static_cast<size_t>(n - i) * sizeof(float));
  }
}

template <class F>
inline void map2(const float* x, const float* g, float* y, int64_t n, F f) {
  auto h = [&](F32 v, F32 w) { return nan_as_libm(v, f(v, w)); };
  int64_t i = 0;
  for (; i + L <= n; i += L)
    h(F32::load_unaligned(x + i), F32::load_unaligned(g + i)).store_unaligned(y + i);
  if (i < n) {
    alignas(64) float t[L] = {}, u[L] = {};
    std::memcpy(t, x + i, static_cast<size_t>(n - i) * sizeof(float));
    std::memcpy(u, g + i, static_cast<size_t>(n - i) * sizeof(float));
    h(F32::load_aligned(t), F32::load_aligned(u)).store_aligned(t);
    std::memcpy(y + i, t, static_cast<size_t>(n - i) * sizeof(float));
  }
}

void exp(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](F32 v) { return xsimd::exp(v); });
}
void log(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](F32 v) { return xsimd::log(v); });
}
void log1p(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](F32 v) { return xsimd::log1p(v); });
}
void expm1(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](F32 v) { return xsimd::expm1(v); });
}
void tanh(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](F32 v) { return xsimd::tanh(v); });
}
void scaled_exp(const float* x, float shift, float scale, float* y, int64_t n) {
  const F32 s(shift), c(scale);
  map1(x, y, n, [&](F32 v) {
    const F32 d = v - s;
    return nan_as_libm(d, c * xsimd::exp(d));
  });
}

const float kGeluK = static_cast<float>(std::sqrt(2.0 / std::numbers::pi));
constexpr float kGeluC = 0.044715f;

void gelu_tanh(const float* x, float* y, int64_t n) {
  const F32 k(kGeluK), c(kGeluC), half(0.5f), one(1.f);
  map1(x, y, n, [&](F32 v) {
    F32 t = xsimd::tanh(k * (v + c * ((v * v) * v)));
    return v * (half * (one + t));
  });
}

// d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2),  t = tanh(k (x + c x^3)).
void gelu_tanh_vjp(const float* x, const float* g, float* dx, int64_t n) {
  const F32 k(kGeluK), c(kGeluC), c3(3 * kGeluC), half(0.5f), one(1.f);
  map2(x, g, dx, n, [&](F32 v, F32 gv) {
    F32 v2 = v * v;
    F32 t = xsimd::tanh(k * (v + c * (v2 * v)));
    F32 d = half * (one + t) + half * v * (one - t * t) * k * (one + c3 * v2);
    return gv * d;
  });
}

// ---- random samplers (jax-random.md §7-§9) -------------------------------------------------------

const float kSqrt2 = static_cast<float>(std::numbers::sqrt2);  // 1.4142135 (0x3FB504F3)
constexpr float kNormalLo = -0x1.fffffep-1f;                   // nextafter(-1, 0)

// §7: the top 23 bits as a mantissa in [1, 2), minus 1, then f * (max - min) + min with
// separate roundings, floored at min.
void uniform(const uint32_t* w, float* out, int64_t n, float minval, float maxval) {
  const F32 lo(minval), range(maxval - minval), one(1.f);
  const U32 exponent_of_one(0x3F800000u);
  for (int64_t i = 0; i < n; i += L) {
    U32 b = U32::load_unaligned(w + i);
    F32 f = xsimd::bitwise_cast<F32>((b >> 9) | exponent_of_one) - one;
    xsimd::max(lo, f * range + lo).store_unaligned(out + i);
  }
}

// log(1 + t) in double, for float t with 2^-26 <= |t| and -1 < t < 2^20, where s = 1 + t is
// exact: s = 2^k m with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(u), u = f / (2 + f), f = m - 1
// (exact). |u| < 0.172, so cutting the atanh series after u^17 leaves < 2^-50; the relative error
// is below 2^-49 in all. Only 64-bit integer ops that AVX2 has (xsimd's own log1p emulates
// signed 64-bit shifts and int64 -> double, which made it about twice as slow).
inline F64 log1p_f64(F64 t) {
  const F64 s = F64(1.0) + t;
  const U64 b = xsimd::bitwise_cast<U64>(s) + U64(0x3FF0000000000000ull - 0x3FE6A09E00000000ull);
  const F64 m =
      xsimd::bitwise_cast<F64>((b & U64(0x000FFFFFFFFFFFFFull)) + U64(0x3FE6A09E00000000ull));
  const F64 k = xsimd::bitwise_cast<F64>((b >> 52) | U64(0x4330000000000000ull)) -
                F64(0x1p52 + 1023);  // the exponent as a double, via the 2^52 trick
  const F64 f = m - F64(1.0);
  const F64 u = f / (F64(2.0) + f), z = u * u;
  F64 q(1.0 / 17);
  for (double c : {1.0 / 15, 1.0 / 13, 1.0 / 11, 1.0 / 9, 1.0 / 7, 1.0 / 5, 1.0 / 3})
    q = F64(c) + q * z;
  const F64 u2 = u + u;
  const F64 log_m = u2 + u2 * (z * q);
  const F64 ln2_hi(6.93147180369123816490e-01), ln2_lo(1.90821492927058770002e-10);
  return k * ln2_hi + (k * ln2_lo + log_m);
}

// The reference: log1p in 64-bit-mantissa long double, rounded once. For |t| < 2^-26,
// log1p(t) = t (1 - t/2 + ...) is within a quarter float32 ulp of t, so it rounds to t.
float log1p_exact(float t) {
  if (std::fabs(t) < 0x1p-26f) return t;
  return static_cast<float>(std::log1p(static_cast<long double>(t)));
}

// Correctly rounded float32 log1p, in place on a padded buffer (n <= kBuf). Rounding the
// double result to float32 is exact unless it lies within 2^12 double ulps (2^-41 relative)
// of a float32 rounding midpoint; a piece holding such a lane (about 1 lane in 2^16) or an
// input outside log1p_f64's domain has its flagged lanes redone by log1p_exact.
void log1p_correct(float* t, int64_t n) {
  constexpr int64_t kWindow = 1 << 12;
  alignas(64) double d[kBuf];
  alignas(64) float out[kBuf];
  bool redo = false;
  for (int64_t i = 0; i < n; i += L) {
    F32 v = F32::load_aligned(t + i);
    redo |= xsimd::any(!((v > F32(-1.f)) & (v < F32(0x1p20f))));
  }
  for (int64_t i = 0; i < n; ++i) d[i] = t[i];
  for (int64_t i = 0; i < n; i += static_cast<int64_t>(F64::size)) {
    F64 r = log1p_f64(F64::load_aligned(d + i));
    r.store_aligned(d + i);
    // The 29 low mantissa bits that rounding to float32 drops, against the halfway point.
    I64 x = (xsimd::bitwise_cast<I64>(r) & I64(0x1FFFFFFF)) - I64((1 << 28) - kWindow);
    redo |= xsimd::any((x > I64(-1)) & (x < I64(2 * kWindow + 1)));
  }
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(d[i]);
  for (int64_t i = 0; i < n; i += L) {
    F32 v = F32::load_aligned(t + i);
    xsimd::select(xsimd::abs(v) < F32(0x1p-26f), v, F32::load_aligned(out + i))
        .store_aligned(out + i);
  }
  if (redo)
    for (int64_t i = 0; i < n; ++i) {
      int64_t bits;
      std::memcpy(&bits, &d[i], sizeof bits);
      int64_t x = (bits & 0x1FFFFFFF) - ((1 << 28) - kWindow);
      if (!(t[i] > -1.f && t[i] < 0x1p20f) || (x >= 0 && x <= 2 * kWindow))
        out[i] = log1p_exact(t[i]);
    }
  std::memcpy(t, out, static_cast<size_t>(n) * sizeof(float));
}

// §8a: XLA/StableHLO ErfInv32 (Giles' single-precision erfinv), in place, n <= kBuf.
constexpr float kErfInvL[9] = {2.81022636e-08f,  3.43273939e-07f, -3.5233877e-06f,
                               -4.39150654e-06f, 0.00021858087f,  -0.00125372503f,
                               -0.00417768164f,  0.246640727f,    1.50140941f};
constexpr float kErfInvG[9] = {-0.000200214257f, 0.000100950558f, 0.00134934322f,
                               -0.00367342844f,  0.00573950773f,  -0.0076224613f,
                               0.00943887047f,   1.00167406f,     2.83297682f};

void erf_inv(float* x, int64_t n) {
  alignas(64) float t[kBuf];
  for (int64_t i = 0; i < n; i += L) {
    F32 v = F32::load_unaligned(x + i);
    (-(v * v)).store_aligned(t + i);
  }
  log1p_correct(t, n);
  const F32 inf(std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < n; i += L) {
    F32 v = F32::load_unaligned(x + i), w = -F32::load_aligned(t + i);
    auto central = w < F32(5.f);
    F32 p(kErfInvL[0]);
    if (xsimd::all(central)) {  // |x| < 0.9966 in every lane: the usual case, no tail branch
      F32 ww = w - F32(2.5f);
      for (int k = 1; k < 9; ++k) p = F32(kErfInvL[k]) + p * ww;
    } else {
      F32 ww = xsimd::select(central, w - F32(2.5f), xsimd::sqrt(w) - F32(3.f));
      p = xsimd::select(central, p, F32(kErfInvG[0]));
      for (int k = 1; k < 9; ++k)
        p = xsimd::select(central, F32(kErfInvL[k]), F32(kErfInvG[k])) + p * ww;
    }
    F32 r = xsimd::select(xsimd::abs(v) == F32(1.f), v * inf, p * v);
    r.store_unaligned(x + i);
  }
}

// §8: sqrt(2) * erf_inv(uniform(nextafter(-1, 0), 1)).
void normal(const uint32_t* w, float* f, int64_t n) {
  uniform(w, f, n, kNormalLo, 1.f);
  erf_inv(f, n);
  for (int64_t i = 0; i < n; i += L)
    (F32(kSqrt2) * F32::load_unaligned(f + i)).store_unaligned(f + i);
}

// §9: sqrt(2) erf_inv(uniform(a, b)), clipped to [lo, hi].
void truncated_normal(const uint32_t* w, float* f, int64_t n, float a, float b, float lo,
                      float hi) {
  uniform(w, f, n, a, b);
  erf_inv(f, n);
  const F32 s(kSqrt2), vlo(lo), vhi(hi);
  for (int64_t i = 0; i < n; i += L)
    xsimd::min(vhi, xsimd::max(vlo, s * F32::load_unaligned(f + i))).store_unaligned(f + i);
}

// ---- threefry (jax-random.md §1, §5, §6) ------------------------------------------------------

alignas(64) constexpr uint32_t kIota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

void threefry_counter(uint32_t k0, uint32_t k1, uint64_t begin, int64_t count, uint32_t* out) {
  const uint32_t hi = static_cast<uint32_t>(begin >> 32), lo = static_cast<uint32_t>(begin);
  const U32 iota = U32::load_aligned(kIota);
  int64_t i = 0;
  for (; i + L <= count; i += L) {
    U32 x0(hi), x1 = U32(lo + static_cast<uint32_t>(i)) + iota;
    block(k0, k1, x0, x1);
    (x0 ^ x1).store_unaligned(out + i);
  }
  for (; i < count; ++i) {
    uint32_t x0 = hi, x1 = lo + static_cast<uint32_t>(i);
    block(k0, k1, x0, x1);
    out[i] = x0 ^ x1;
  }
}

void threefry_pairs(uint32_t k0, uint32_t k1, const uint32_t* c0, const uint32_t* c1, uint32_t* y0,
                    uint32_t* y1, int64_t count) {
  int64_t i = 0;
  for (; i + L <= count; i += L) {
    U32 x0 = U32::load_unaligned(c0 + i), x1 = U32::load_unaligned(c1 + i);
    block(k0, k1, x0, x1);
    x0.store_unaligned(y0 + i);
    x1.store_unaligned(y1 + i);
  }
  for (; i < count; ++i) {
    uint32_t x0 = c0[i], x1 = c1[i];
    block(k0, k1, x0, x1);
    y0[i] = x0, y1[i] = x1;
  }
}

void threefry_iota(uint32_t k0, uint32_t k1, uint32_t first0, uint32_t first1, uint32_t* y0,
                   uint32_t* y1, int64_t count) {
  const U32 iota = U32::load_aligned(kIota);
  int64_t i = 0;
  for (; i + L <= count; i += L) {
    U32 x0 = U32(first0 + static_cast<uint32_t>(i)) + iota;
    U32 x1 = U32(first1 + static_cast<uint32_t>(i)) + iota;
    block(k0, k1, x0, x1);
    x0.store_unaligned(y0 + i);
    x1.store_unaligned(y1 + i);
  }
  for (; i < count; ++i) {
    uint32_t x0 = first0 + static_cast<uint32_t>(i), x1 = first1 + static_cast<uint32_t>(i);
    block(k0, k1, x0, x1);
    y0[i] = x0, y1[i] = x1;
  }
}

}  // namespace flaxpp::simd::FLAXPP_SIMD_ISA

#define FLAXPP_SIMD_STR2(x) #x
#define FLAXPP_SIMD_STR(x) FLAXPP_SIMD_STR2(x)
#define FLAXPP_SIMD_CAT2(a, b) a##b
#define FLAXPP_SIMD_CAT(a, b) FLAXPP_SIMD_CAT2(a, b)

namespace flaxpp::simd {
// The table core/simd/dispatch.cpp picks from, named kernels_<isa>.
extern const Kernels FLAXPP_SIMD_CAT(kernels_, FLAXPP_SIMD_ISA);
const Kernels FLAXPP_SIMD_CAT(kernels_, FLAXPP_SIMD_ISA) = {
    FLAXPP_SIMD_STR(FLAXPP_SIMD_ISA),
    static_cast<int>(FLAXPP_SIMD_ISA::L),
    &FLAXPP_SIMD_ISA::exp,
    &FLAXPP_SIMD_ISA::log,
    &FLAXPP_SIMD_ISA::log1p,
    &FLAXPP_SIMD_ISA::expm1,
    &FLAXPP_SIMD_ISA::tanh,
    &FLAXPP_SIMD_ISA::scaled_exp,
    &FLAXPP_SIMD_ISA::gelu_tanh,
    &FLAXPP_SIMD_ISA::gelu_tanh_vjp,
    &FLAXPP_SIMD_ISA::uniform,
    &FLAXPP_SIMD_ISA::normal,
    &FLAXPP_SIMD_ISA::truncated_normal,
    &FLAXPP_SIMD_ISA::erf_inv,
    &FLAXPP_SIMD_ISA::log1p_correct,
    &FLAXPP_SIMD_ISA::threefry_counter,
    &FLAXPP_SIMD_ISA::threefry_pairs,
    &FLAXPP_SIMD_ISA::threefry_iota,
};
}  // namespace flaxpp::simd
