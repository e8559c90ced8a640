// The Threefry-2x32-20 block function (Random123; jax-random.md §1) over uint32_t or a vector of
// them: the same arithmetic lane by lane. Rotate<T> is the one thing an instruction set may do
// its own way (core/simd/isa_*.cpp specialise it for their vector type before first use).
//
// Everything here is in an unnamed namespace on purpose: each ISA's translation unit is built
// with its own -march, and one shared (COMDAT) copy of block<uint32_t> could hand a v2 machine
// the v3 file's BMI2 rotates.
#pragma once

#include <cstdint>

namespace flaxpp::simd {
namespace {

template <class T>
struct Rotate {
  template <int R>
  static T left(const T& x) {
    return (x << R) | (x >> (32 - R));
  }
};

// One Threefry round.
template <int R, class T>
inline void mix(T& x0, T& x1) {
  x0 += x1;
  x1 = Rotate<T>::template left<R>(x1);
  x1 ^= x0;
}

template <class T>
inline void mix4a(T& x0, T& x1) {  // rotation group A
  mix<13>(x0, x1), mix<15>(x0, x1), mix<26>(x0, x1), mix<6>(x0, x1);
}
template <class T>
inline void mix4b(T& x0, T& x1) {  // rotation group B
  mix<17>(x0, x1), mix<29>(x0, x1), mix<16>(x0, x1), mix<24>(x0, x1);
}

// 20 rounds in groups A B A B A, with key injection s = 1..5 after each group.
template <class T>
inline void block(uint32_t k0, uint32_t k1, T& x0, T& x1) {
  const uint32_t k2 = k0 ^ k1 ^ 0x1BD11BDAu;
  x0 += T(k0), x1 += T(k1);
  mix4a(x0, x1), x0 += T(k1), x1 += T(k2 + 1u);
  mix4b(x0, x1), x0 += T(k2), x1 += T(k0 + 2u);
  mix4a(x0, x1), x0 += T(k0), x1 += T(k1 + 3u);
  mix4b(x0, x1), x0 += T(k1), x1 += T(k2 + 4u);
  mix4a(x0, x1), x0 += T(k2), x1 += T(k0 + 5u);
}

}  // namespace
}  // namespace flaxpp::simd
