// doctest's main, shared by every tests/<area>/<file>_test.cpp binary. Binaries built with
// FLAXPP_TEST_EVERY_SIMD (CMakeLists.txt: the ones whose results go through SIMD kernels) run
// their whole suite once per SIMD set this CPU has (core/simd/kernels.hpp), unless FLAXPP_SIMD
// names one.
#define DOCTEST_CONFIG_IMPLEMENT
#include <cstdio>
#include <cstdlib>

#include <doctest/doctest.h>

#include "core/simd/kernels.hpp"

int main(int argc, char** argv) {
#ifdef FLAXPP_TEST_EVERY_SIMD
  const char* env = std::getenv("FLAXPP_SIMD");
  if (!env || !*env) {
    int rc = 0;
    for (const flaxpp::simd::Kernels* set : flaxpp::simd::supported()) {
      flaxpp::simd::use(set->name);
      std::printf("[flaxpp] the whole suite with the %s kernels\n", set->name);
      doctest::Context context(argc, argv);
      rc |= context.run();
      if (context.shouldExit()) break;
    }
    return rc;
  }
#endif
  doctest::Context context(argc, argv);
  return context.run();
}
