// simd::Kernels for AVX2 (x86-64-v3; xsimd::avx2, not fma3<avx2>: nothing fused),
// built with its own -march (CMakeLists.txt: FLAXPP_ISA_SOURCES).
#define FLAXPP_SIMD_ISA avx2
#define FLAXPP_SIMD_ARCH xsimd::avx2
#define FLAXPP_SIMD_ROTATE 256
#include "core/simd/kernels_impl.hpp"
