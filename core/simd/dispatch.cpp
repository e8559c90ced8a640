// Picks the simd::Kernels set: the widest this CPU runs, or FLAXPP_SIMD's.
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/simd/kernels.hpp"

namespace flaxpp::simd {

#if defined(__x86_64__)
extern const Kernels kernels_sse4_2, kernels_avx2, kernels_avx512;
#else
extern const Kernels kernels_native;
#endif

namespace {

std::vector<const Kernels*> detect() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  std::vector<const Kernels*> sets{&kernels_sse4_2};
  // __builtin_cpu_supports also checks that the OS saves the wider registers (XGETBV).
  if (__builtin_cpu_supports("avx2")) sets.push_back(&kernels_avx2);
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    sets.push_back(&kernels_avx512);
  return sets;
#else
  return {&kernels_native};
#endif
}

const std::vector<const Kernels*>& sets() {
  static const std::vector<const Kernels*> s = detect();
  return s;
}

const Kernels* find(std::string_view name) {
  for (const Kernels* k : sets())
    if (name == k->name) return k;
  std::string have;
  for (const Kernels* k : sets()) have += std::string(have.empty() ? "" : ", ") + k->name;
  throw std::invalid_argument("this CPU cannot run the '" + std::string(name) +
                              "' kernels (it runs: " + have + ")");
}

const Kernels* initial() {
  const char* env = std::getenv("FLAXPP_SIMD");
  if (env && *env) {
    try {
      return find(env);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("FLAXPP_SIMD=") + env + ": " + e.what());
    }
  }
  return sets().back();
}

std::atomic<const Kernels*> g_active{nullptr};

}  // namespace

const Kernels& kernels() {
  const Kernels* k = g_active.load(std::memory_order_acquire);
  if (k) return *k;
  const Kernels* first = initial();
  g_active.compare_exchange_strong(k, first, std::memory_order_acq_rel);
  return *g_active.load(std::memory_order_acquire);
}

std::span<const Kernels* const> supported() { return sets(); }

void use(std::string_view name) {
  try {
    g_active.store(find(name), std::memory_order_release);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("simd::use: ") + e.what());
  }
}

}  // namespace flaxpp::simd
