// simd::Kernels for AVX-512 F/BW/DQ/VL (x86-64-v4),
// built with its own -march (CMakeLists.txt: FLAXPP_ISA_SOURCES).
#define FLAXPP_SIMD_ISA avx512
#define FLAXPP_SIMD_ARCH xsimd::avx512bw
#define FLAXPP_SIMD_ROTATE 512
#include "core/simd/kernels_impl.hpp"
