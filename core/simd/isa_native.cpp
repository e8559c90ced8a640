// simd::Kernels for the compiler's target where it is not x86-64 (neon64 on aarch64),
// built with its own -march (CMakeLists.txt: FLAXPP_ISA_SOURCES).
#define FLAXPP_SIMD_ISA native
#define FLAXPP_SIMD_ARCH xsimd::default_arch
#define FLAXPP_SIMD_ROTATE 0
#include "core/simd/kernels_impl.hpp"
