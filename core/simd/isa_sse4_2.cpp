// simd::Kernels for SSE4.2 (x86-64-v2, the baseline every x86-64 build runs),
// built with its own -march (CMakeLists.txt: FLAXPP_ISA_SOURCES).
#define FLAXPP_SIMD_ISA sse4_2
#define FLAXPP_SIMD_ARCH xsimd::sse4_2
#define FLAXPP_SIMD_ROTATE 0
#include "core/simd/kernels_impl.hpp"
