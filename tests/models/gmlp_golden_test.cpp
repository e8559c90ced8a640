// The README model's golden output: hashes of its init parameters and of a forward pass, recorded
// once, so that every build (x86-64-v2, v3, v4, native; g++ and clang; every SIMD set, since this
// suite runs once per set) is shown to produce the same bits. What the values should be is
// established elsewhere (Flax parity in gmlp_test.cpp, PyTorch float64 in scripts/compare_torch);
// this test pins that they do not move between builds and machines.
//
// What may differ between machines: a matrix product's last bits, when OpenBLAS picks another
// kernel for another CPU (its DYNAMIC_ARCH core); and, on aarch64, the float maps, which xsimd's
// neon64 code evaluates with fused multiply-adds. So the parameters (no product) have one hash per
// architecture, the forward pass one per OpenBLAS core; where nothing is recorded the test says
// so and checks only that every SIMD set agrees.
#include <cblas.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include <doctest/doctest.h>

#include "core/parallel.hpp"
#include "core/random.hpp"
#include "core/tree.hpp"
#include "models/gmlp.hpp"

using namespace flaxpp;
namespace rnd = flaxpp::random;

namespace {

// FNV-1a, 64-bit.
struct Fnv {
  uint64_t h = 0xcbf29ce484222325ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
  void add(const std::string& s) { add(s.data(), s.size()); }
  void add(const Array& a) {
    add(dtype_name(a.dtype()));
    for (int64_t d : a.shape()) add(&d, sizeof d);
    add(a.raw(), a.nbytes());
  }
};

uint64_t hash_tree(const Tree& t) {
  Fnv f;
  for (const auto& [path, leaf] : flatten_dict(t)) {
    f.add(path);
    f.add(leaf);
  }
  return f.h;
}

uint64_t hash_array(const Array& a) {
  Fnv f;
  f.add(a);
  return f.h;
}

std::string hex(uint64_t v) {
  char b[19];
  std::snprintf(b, sizeof b, "0x%016llx", static_cast<unsigned long long>(v));
  return b;
}

#if defined(__x86_64__)
constexpr const char* kArch = "x86_64";
#elif defined(__aarch64__)
constexpr const char* kArch = "aarch64";
#else
constexpr const char* kArch = "other";
#endif

// x86_64 and Haswell: recorded with g++ 12, -march=native on an AMD EPYC with AVX-512, one
// thread; the same in every build (isa_matrix) and with every SIMD set there. aarch64 and armv8:
// recorded with aarch64-linux-gnu-g++ 12 under qemu-aarch64 7.2 (scripts/check cross), whose
// soft-float emulates fused multiply-adds exactly; not yet seen on ARM hardware.
const std::map<std::string, uint64_t> kParamsHash = {
    {"x86_64", 0x9f305381b669c621ull},
    {"aarch64", 0x5a4b430aa39bde7eull},
};
const std::map<std::string, uint64_t> kForwardHash = {
    {"Haswell", 0xb2fe93b8f9063fc4ull},
    {"armv8", 0x12b1ac826089711cull},
};

}  // namespace

TEST_CASE("README model gMLP(20000, 512, 4): init and forward bits as recorded") {
  const int threads = num_threads();
  set_num_threads(1);  // a product's blocks, and so its bits, depend on the thread count
  struct RestoreThreads {
    int n;
    ~RestoreThreads() { set_num_threads(n); }
  } restore{threads};

  models::gMLP model{.num_tokens = 20000, .dim = 512, .depth = 4};
  const Array tokens = rnd::randint(rnd::PRNGKey(1), {1, 1000}, 0, 20000);
  const Tree variables = model.init(rnd::PRNGKey(0), tokens);
  const Array logits = model.apply(variables, tokens);
  REQUIRE(logits.shape() == Shape{1, 1000, 20000});

  const uint64_t params = hash_tree(variables), forward = hash_array(logits);
  const std::string core = openblas_get_corename();
  MESSAGE("params hash " << hex(params) << ", forward hash " << hex(forward) << " (OpenBLAS core "
                         << core << ")");
  static uint64_t first_params = params, first_forward = forward;  // the first SIMD set's run
  CHECK(params == first_params);
  CHECK(forward == first_forward);
  auto arch = kParamsHash.find(kArch);
  if (arch == kParamsHash.end())
    MESSAGE("no parameter hash recorded for " << kArch << ": SIMD sets compared only");
  else
    CHECK(params == arch->second);
  auto it = kForwardHash.find(core);
  if (it == kForwardHash.end())
    MESSAGE("no forward hash recorded for OpenBLAS core " << core << ": SIMD sets compared only");
  else
    CHECK(forward == it->second);
}
