// core/simd: every instruction set this CPU runs gives the baseline's bits, kernel by kernel, on
// tails of every length and on special values; the maps are accurate against double libm.
#include "core/simd/kernels.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "core/ops.hpp"
#include "core/random.hpp"
#include "core/simd/threefry_block.hpp"

namespace simd = flaxpp::simd;
namespace rnd = flaxpp::random;

using flaxpp::Array;

namespace {

using Map = void (*)(const float*, float*, int64_t);

struct Restore {  // puts the default set back after a test that switches
  std::string name = simd::kernels().name;
  ~Restore() { simd::use(name); }
};

std::vector<uint32_t> bits_of(const std::vector<float>& v) {
  std::vector<uint32_t> b(v.size());
  std::memcpy(b.data(), v.data(), v.size() * sizeof(float));
  return b;
}

// Inputs: special values, then a wide spread (normal draws at several scales).
std::vector<float> inputs() {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {0.f,     -0.f,    1.f,   -1.f,   inf,   -inf,   NAN,    1e-45f,
                          -1e-45f, 1e-38f,  88.7f, -88.7f, 89.f,  -104.f, 1e30f,  -1e30f,
                          0.5f,    -0.999f, 9.f,   -9.f,   1e-7f, -1e-7f, 3.4e38f};
  for (float scale : {0.01f, 1.f, 5.f, 30.f}) {
    Array n = rnd::normal(rnd::fold_in(rnd::PRNGKey(3), static_cast<uint32_t>(scale * 100)), {250});
    const float* p = n.data<float>();
    for (int64_t i = 0; i < n.size(); ++i) x.push_back(p[i] * scale);
  }
  return x;
}

std::vector<float> run(Map f, const std::vector<float>& x, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  f(x.data(), y.data(), n);
  return y;
}

}  // namespace

TEST_CASE("the sets this CPU runs: baseline first, the widest by default, unknown names refused") {
  auto sets = simd::supported();
  REQUIRE(!sets.empty());
#if defined(__x86_64__)
  CHECK(std::string(sets.front()->name) == "sse4_2");
  CHECK(sets.front()->float_lanes == 4);
  for (const auto* s : sets) {
    if (std::string(s->name) == "avx2") CHECK(s->float_lanes == 8);
    if (std::string(s->name) == "avx512") CHECK(s->float_lanes == 16);
  }
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  CHECK(sets.size() == 1u + (__builtin_cpu_supports("avx2") ? 1u : 0u) + (avx512 ? 1u : 0u));
#endif
  MESSAGE("SIMD sets on this CPU: " << [&] {
    std::string s;
    for (const auto* k : sets) s += std::string(s.empty() ? "" : ", ") + k->name;
    return s;
  }());
  Restore restore;
  std::string have;
  for (const auto* k : sets) have += std::string(have.empty() ? "" : ", ") + k->name;
  CHECK_THROWS_WITH_AS(
      simd::use("avx1024"),
      ("simd::use: this CPU cannot run the 'avx1024' kernels (it runs: " + have + ")").c_str(),
      std::invalid_argument);
  simd::use(sets.front()->name);
  CHECK(std::string(simd::kernels().name) == sets.front()->name);
}

TEST_CASE("float maps: every set gives the baseline's bits, at every tail length") {
  const simd::Kernels& base = *simd::supported().front();
  const std::vector<float> x = inputs();
  struct Named {
    const char* name;
    Map simd::Kernels::*f;
  };
  const Named maps[] = {{"exp", &simd::Kernels::exp},     {"log", &simd::Kernels::log},
                        {"log1p", &simd::Kernels::log1p}, {"expm1", &simd::Kernels::expm1},
                        {"tanh", &simd::Kernels::tanh},   {"gelu_tanh", &simd::Kernels::gelu_tanh}};
  for (const auto* set : simd::supported()) {
    for (const auto& m : maps) {
      const std::string set_name = set->name;
      CAPTURE(set_name);
      const std::string map = m.name;
      CAPTURE(map);
      const auto want = bits_of(run(base.*m.f, x, static_cast<int64_t>(x.size())));
      CHECK(bits_of(run(set->*m.f, x, static_cast<int64_t>(x.size()))) == want);
      for (int64_t n = 1; n <= 40; ++n) {  // tails: the first n elements alone
        auto got = bits_of(run(set->*m.f, x, n));
        CHECK(std::equal(got.begin(), got.end(), want.begin()));
      }
    }
    // Two-input and parametrised maps.
    std::vector<float> g(x.size(), 0.f), a(x.size()), b(x.size());
    for (size_t i = 0; i < g.size(); ++i) g[i] = 0.25f + static_cast<float>(i % 7);
    base.gelu_tanh_vjp(x.data(), g.data(), a.data(), static_cast<int64_t>(x.size()));
    set->gelu_tanh_vjp(x.data(), g.data(), b.data(), static_cast<int64_t>(x.size()));
    CHECK(bits_of(a) == bits_of(b));
    base.scaled_exp(x.data(), 2.5f, -0.75f, a.data(), static_cast<int64_t>(x.size()));
    set->scaled_exp(x.data(), 2.5f, -0.75f, b.data(), static_cast<int64_t>(x.size()));
    CHECK(bits_of(a) == bits_of(b));
  }
}

TEST_CASE("float maps: within a few ulp of double libm where the result is a normal float") {
  // Bounds in float32 ulp of the double result: the worst measured on these inputs (exp 1.11,
  // log 0.67, log1p 0.71, expm1 1.67, tanh 0.87) with about half an ulp to spare.
  struct Case {
    const char* name;
    Map simd::Kernels::*f;
    double (*ref)(double);
    double max_ulp;
  };
  const Case cases[] = {
      {"exp", &simd::Kernels::exp, [](double v) { return std::exp(v); }, 1.6},
      {"log", &simd::Kernels::log, [](double v) { return std::log(v); }, 1.2},
      {"log1p", &simd::Kernels::log1p, [](double v) { return std::log1p(v); }, 1.2},
      {"expm1", &simd::Kernels::expm1, [](double v) { return std::expm1(v); }, 2.2},
      {"tanh", &simd::Kernels::tanh, [](double v) { return std::tanh(v); }, 1.4},
  };
  const std::vector<float> x = inputs();
  const simd::Kernels& k = simd::kernels();
  for (const auto& c : cases) {
    CAPTURE(c.name);
    auto y = run(k.*c.f, x, static_cast<int64_t>(x.size()));
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double want = c.ref(x[i]);
      if (!std::isfinite(want) || std::fabs(want) < 1e-37 || std::fabs(want) > 1e38) continue;
      const double ulp = std::ldexp(1.0, std::ilogb(static_cast<float>(want)) - 23);
      worst = std::max(worst, std::fabs(y[i] - want) / ulp);
    }
    MESSAGE(std::string(c.name) << ": worst " << worst << " ulp");
    CHECK(worst <= c.max_ulp);
  }
  // Specials as IEEE says.
  const float inf = std::numeric_limits<float>::infinity();
  float in[4] = {inf, -inf, 0.f, NAN}, out[4];
  k.exp(in, out, 4);
  CHECK(out[0] == inf);
  CHECK(out[1] == 0.f);
  CHECK(out[2] == 1.f);
  CHECK(std::isnan(out[3]));
  k.tanh(in, out, 4);
  CHECK(out[0] == 1.f);
  CHECK(out[1] == -1.f);
  CHECK(out[2] == 0.f);
  CHECK(std::isnan(out[3]));
}

TEST_CASE("random kernels: every set gives the baseline's bits") {
  const simd::Kernels& base = *simd::supported().front();
  constexpr int64_t n = 2048 + 16;
  std::vector<uint32_t> w(n), y0(n), y1(n), z1(n), p0s(n), p1s(n);
  base.threefry_counter(1, 2, 0, n, w.data());
  for (const auto* set : simd::supported()) {
    const std::string set_name = set->name;
    CAPTURE(set_name);
    alignas(64) static float a[n], b[n];  // log1p_correct wants 64-byte aligned buffers
    base.uniform(w.data(), a, n, -3.f, 2.f);
    set->uniform(w.data(), b, n, -3.f, 2.f);
    CHECK(std::memcmp(a, b, sizeof a) == 0);
    base.normal(w.data(), a, n);
    set->normal(w.data(), b, n);
    CHECK(std::memcmp(a, b, sizeof a) == 0);
    base.truncated_normal(w.data(), a, n, -0.9f, 0.95f, -1.9f, 2.f);
    set->truncated_normal(w.data(), b, n, -0.9f, 0.95f, -1.9f, 2.f);
    CHECK(std::memcmp(a, b, sizeof a) == 0);
    // erf_inv / log1p_correct near their edges (|x| -> 1, t -> -1).
    for (int64_t i = 0; i < n; ++i) a[i] = b[i] = std::nextafter(1.f, 0.f) * std::sin(0.01f * i);
    base.erf_inv(a, n);
    set->erf_inv(b, n);
    CHECK(std::memcmp(a, b, sizeof a) == 0);
    for (int64_t i = 0; i < n; ++i)
      a[i] = b[i] = -1.f + std::ldexp(1.f, -static_cast<int>(i % 24)) + 1e-3f * i;
    base.log1p_correct(a, n);
    set->log1p_correct(b, n);
    CHECK(std::memcmp(a, b, sizeof a) == 0);

    // Threefry against the scalar block function, with every tail length up to 40.
    for (int64_t count : {int64_t{1}, int64_t{15}, int64_t{17}, int64_t{40}, n}) {
      set->threefry_counter(7, 9, (uint64_t{5} << 32) + 100, count, y0.data());
      set->threefry_iota(7, 9, 11, 1000, y1.data(), z1.data(), count);
      set->threefry_pairs(7, 9, w.data(), w.data() + 1, p0s.data(), p1s.data(),
                          std::min(count, n / 2));
      bool ok = true;
      for (int64_t i = 0; i < count; ++i) {
        uint32_t x0 = 5, x1 = 100 + static_cast<uint32_t>(i);
        simd::block(7u, 9u, x0, x1);
        ok = ok && y0[i] == (x0 ^ x1);
        uint32_t a0 = 11 + static_cast<uint32_t>(i), a1 = 1000 + static_cast<uint32_t>(i);
        simd::block(7u, 9u, a0, a1);
        ok = ok && y1[i] == a0 && z1[i] == a1;
        if (i < n / 2) {
          uint32_t p0 = w[i], p1 = w[i + 1];
          simd::block(7u, 9u, p0, p1);
          ok = ok && p0s[i] == p0 && p1s[i] == p1;
        }
      }
      CAPTURE(count);
      CHECK(ok);
    }
  }
}

TEST_CASE("the public samplers and ops give the same arrays under every set") {
  Restore restore;
  auto draw = [] {
    auto key = rnd::PRNGKey(42);
    std::vector<Array> r = {rnd::uniform(key, {1001}), rnd::normal(key, {77, 13}),
                            rnd::truncated_normal(key, -2.f, 2.f, {1000}),
                            rnd::exponential(key, {333}), rnd::bits(key, {70000})};
    Array x = rnd::normal(rnd::PRNGKey(1), {5, 203}) * 4.f;
    for (Array (*f)(const Array&) : {&flaxpp::jnp::exp, &flaxpp::jnp::log1p, &flaxpp::jnp::tanh})
      r.push_back(f(x));
    return r;
  };
  simd::use(simd::supported().front()->name);
  const auto want = draw();
  for (const auto* set : simd::supported()) {
    const std::string set_name = set->name;
    CAPTURE(set_name);
    simd::use(set->name);
    const auto got = draw();
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      CAPTURE(i);
      CHECK(got[i].shape() == want[i].shape());
      CHECK(std::memcmp(got[i].raw(), want[i].raw(), want[i].nbytes()) == 0);
    }
  }
}
