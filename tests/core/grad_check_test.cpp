// Finite-difference check of every differentiable primitive (ggml's test-backend-ops grad mode):
// one table, one row per primitive and configuration.
//
// For each row, f maps float32 inputs to a float32 array; the checked scalar is
// L(x) = sum(f(x) * w) for a fixed random w. The analytic side is grad(L); the numeric side
// evaluates the float32 f at x +- h (one element at a time) and forms (L+ - L-) / (x+ - x-) in
// double, using the perturbation float32 actually applied. Entries must agree within
// tol * max(1, |fd|).
//
// Kinks, and how the generators keep away from them (each further than the row's h):
//   abs, sign at 0            -> |x| >= 0.2
//   maximum / minimum ties    -> operands on interleaved grids 0.1 apart (never equal)
//   clip at lo / hi           -> inputs on a grid 0.05 off the bounds
//   max / min reductions ties -> all values distinct, >= 0.05 apart
//   sqrt, rsqrt, log at 0     -> inputs in [0.3, 3]
//   log1p at -1               -> inputs in [-0.5, 2]
//   divide by 0               -> divisors with |b| >= 0.5
//   power: x^y for x <= 0     -> bases in [0.3, 2]
// stop_gradient is left out on purpose: its gradient is zero by definition, not the function's
// derivative (tests/core/autodiff_test.cpp checks it).
// The conventions AT the kinks (d|x| at 0 = 0, ties split 0.5/0.5, ...) are asserted exactly in
// the test cases after the table.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/vmap.hpp"

using namespace flaxpp;

namespace {

// splitmix64: deterministic numbers from an explicit (seed, index), no global generator.
double unit(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

// A generator fills input `input` (n elements) from `seed`.
using Gen = std::function<std::vector<float>(uint64_t seed, size_t input, int64_t n)>;

Gen uniform(double lo, double hi) {
  return [=](uint64_t seed, size_t input, int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      v[i] = static_cast<float>(lo + (hi - lo) * unit(seed + input, i));
    return v;
  };
}

// |x| in [lo, hi], random sign.
Gen away_from_zero(double lo, double hi) {
  return [=](uint64_t seed, size_t input, int64_t n) {
    auto v = uniform(lo, hi)(seed, input, n);
    for (int64_t i = 0; i < n; ++i)
      if (unit(seed + 77, i) < 0.5) v[i] = -v[i];
    return v;
  };
}

// Distinct values spread over [-2, 2] (>= 4/n apart): no ties for max/min reductions.
Gen distinct() {
  return [](uint64_t seed, size_t input, int64_t n) {
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](int64_t a, int64_t b) { return unit(seed + input, a) < unit(seed + input, b); });
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) v[order[r]] = static_cast<float>(-2.0 + 4.0 * (r + 0.5) / n);
    return v;
  };
}

// Input 0 on the grid 0.1 k, input 1 on 0.1 k + 0.05: operands never tie (maximum/minimum).
Gen interleaved() {
  return [](uint64_t seed, size_t input, int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      v[i] = static_cast<float>(0.1 * std::floor(-15 + 30 * unit(seed + input, i)) +
                                (input ? 0.05 : 0.0));
    return v;
  };
}

// Different generators per input (e.g. any numerator, a divisor away from 0).
Gen per_input(std::vector<Gen> gens) {
  return [=](uint64_t seed, size_t input, int64_t n) { return gens.at(input)(seed, input, n); };
}

using Fn = std::function<Array(const std::vector<Array>&)>;

struct Case {
  std::string name;
  std::vector<Shape> shapes;
  Fn f;
  Gen gen = uniform(-2, 2);
  double h = 1e-2;
  double tol = 2e-3;
};

Array idx(const Shape& s, std::vector<int32_t> v) { return Array::from(s, v); }

std::vector<Case> table() {
  using namespace jnp;
  const Gen pos = uniform(0.3, 3), away = away_from_zero(0.5, 2), any = uniform(-2, 2);
  // A linear op is exact under any step: a large h keeps float32 rounding out of the picture.
  const double lin = 0.25;
  return {
      // ---- elementwise, unary ----
      {"negative", {{3, 4}}, [](auto& x) { return -x[0]; }, any, lin},
      {"exp", {{3, 4}}, [](auto& x) { return exp(x[0]); }},
      {"log", {{3, 4}}, [](auto& x) { return log(x[0]); }, pos},
      {"log1p", {{3, 4}}, [](auto& x) { return log1p(x[0]); }, uniform(-0.5, 2)},
      {"expm1", {{3, 4}}, [](auto& x) { return expm1(x[0]); }},
      {"tanh", {{3, 4}}, [](auto& x) { return tanh(x[0]); }},
      {"sqrt", {{3, 4}}, [](auto& x) { return sqrt(x[0]); }, pos},
      {"rsqrt", {{3, 4}}, [](auto& x) { return rsqrt(x[0]); }, pos},
      {"erf", {{3, 4}}, [](auto& x) { return erf(x[0]); }},
      {"abs", {{3, 4}}, [](auto& x) { return abs(x[0]); }, away_from_zero(0.2, 2)},
      {"sign", {{3, 4}}, [](auto& x) { return sign(x[0]) * 3.f; }, away_from_zero(0.2, 2)},
      {"square", {{3, 4}}, [](auto& x) { return square(x[0]); }},
      {"astype", {{3, 4}}, [](auto& x) { return astype(x[0], DType::float32) * x[0]; }},
      // ---- elementwise, binary, with broadcasting (gradients summed over broadcast axes) ----
      {"add", {{3, 4}, {4}}, [](auto& x) { return x[0] + x[1]; }, any, lin},
      {"add scalar", {{}, {3}}, [](auto& x) { return x[0] + x[1]; }, any, lin},
      {"subtract", {{2, 3, 1}, {3, 4}}, [](auto& x) { return x[0] - x[1]; }, any, lin},
      {"multiply", {{3, 1}, {1, 4}}, [](auto& x) { return x[0] * x[1]; }},
      {"multiply same", {{3, 4}, {3, 4}}, [](auto& x) { return x[0] * x[1]; }},
      {"multiply by constant", {{3, 4}}, [](auto& x) { return 2.5f * x[0] - 1.f; }, any, lin},
      {"divide", {{3, 4}, {4}}, [](auto& x) { return x[0] / x[1]; }, per_input({any, away})},
      {"divide scalar", {{}, {2, 2}}, [](auto& x) { return x[0] / x[1]; }, per_input({any, away})},
      {"power",
       {{3, 4}, {3, 4}},
       [](auto& x) { return power(x[0], x[1]); },
       per_input({uniform(0.3, 2), any})},
      {"power broadcast",
       {{2, 3}, {3}},
       [](auto& x) { return power(x[0], x[1]); },
       per_input({uniform(0.3, 2), any})},
      {"power constant exponent", {{5}}, [](auto& x) { return power(x[0], Array(3.f)); }},
      {"maximum", {{3, 4}, {3, 4}}, [](auto& x) { return maximum(x[0], x[1]); }, interleaved()},
      {"maximum broadcast",
       {{3, 4}, {3, 1}},
       [](auto& x) { return maximum(x[0], x[1]); },
       interleaved()},
      {"minimum broadcast",
       {{4}, {3, 4}},
       [](auto& x) { return minimum(x[0], x[1]); },
       interleaved()},
      {"where broadcast",
       {{3, 4}, {4}},
       [](auto& x) {
         return where(not_equal(idx({3, 1}, {1, 0, 1}), Array(0)), x[0], x[1]);
       }},
      {"where mask",
       {{3, 4}, {3, 4}},
       [](auto& x) { return where(greater(x[0], x[1]), x[0] * x[1], x[1]); },
       interleaved()},
      {"clip",
       {{4, 5}},
       [](auto& x) { return clip(x[0], -0.5f, 0.5f); },
       [](uint64_t seed, size_t, int64_t n) {
         std::vector<float> v(static_cast<size_t>(n));
         for (int64_t i = 0; i < n; ++i)
           v[i] = static_cast<float>(0.1 * std::floor(-10 + 20 * unit(seed, i)) + 0.05);
         return v;
       }},
      // ---- reductions ----
      {"sum all", {{2, 3, 4}}, [](auto& x) { return sum(x[0]); }, any, lin},
      {"sum axis 1", {{2, 3, 4}}, [](auto& x) { return sum(x[0], {1}); }, any, lin},
      {"sum axes 0,2 keepdims",
       {{2, 3, 4}},
       [](auto& x) {
         return sum(x[0], {0, 2}, true);
       },
       any,
       lin},
      {"sum axis -1 keepdims",
       {{2, 3, 4}},
       [](auto& x) { return sum(x[0], {-1}, true); },
       any,
       lin},
      {"mean all", {{2, 3, 4}}, [](auto& x) { return mean(x[0]); }, any, lin},
      {"mean axis 0", {{2, 3, 4}}, [](auto& x) { return mean(x[0], {0}); }, any, lin},
      {"mean axes 1,2 keepdims",
       {{2, 3, 4}},
       [](auto& x) {
         return mean(x[0], {1, 2}, true);
       },
       any,
       lin},
      {"max all", {{3, 4}}, [](auto& x) { return max(x[0]); }, distinct()},
      {"max axis 1", {{3, 4}}, [](auto& x) { return max(x[0], {1}); }, distinct()},
      {"max axis 0 keepdims",
       {{2, 3, 4}},
       [](auto& x) { return max(x[0], {0}, true); },
       distinct()},
      {"min all", {{3, 4}}, [](auto& x) { return min(x[0]); }, distinct()},
      {"min axes 0,2",
       {{2, 3, 4}},
       [](auto& x) {
         return min(x[0], {0, 2});
       },
       distinct()},
      {"var all", {{3, 4}}, [](auto& x) { return var(x[0]); }},
      {"var axis 0", {{3, 4}}, [](auto& x) { return var(x[0], {0}); }},
      {"var axis -1 keepdims", {{2, 3, 4}}, [](auto& x) { return var(x[0], {-1}, true); }},
      {"logsumexp all", {{3, 4}}, [](auto& x) { return logsumexp(x[0]); }},
      {"logsumexp axis 1", {{3, 4}}, [](auto& x) { return logsumexp(x[0], {1}); }},
      {"logsumexp axes 0,2 keepdims",
       {{2, 3, 4}},
       [](auto& x) {
         return logsumexp(x[0], {0, 2}, true);
       }},
      // ---- linear algebra ----
      {"matmul", {{3, 4}, {4, 5}}, [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul batched", {{2, 3, 4}, {2, 4, 5}}, [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul broadcast batch",
       {{2, 1, 3, 4}, {5, 4, 2}},
       [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul batch @ matrix", {{2, 3, 4}, {4, 5}}, [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul matrix @ batch", {{3, 4}, {2, 4, 5}}, [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul vector @ matrix", {{4}, {4, 5}}, [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul matrix @ vector", {{3, 4}, {4}}, [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul vector @ vector", {{4}, {4}}, [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul batch @ vector", {{2, 3, 4}, {4}}, [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul vector @ batch", {{4}, {2, 4, 3}}, [](auto& x) { return matmul(x[0], x[1]); }},
      {"dot", {{3, 4}, {4, 2}}, [](auto& x) { return dot(x[0], x[1]); }},
      {"dot vectors", {{4}, {4}}, [](auto& x) { return dot(x[0], x[1]); }},
      {"vdot", {{3, 4}, {3, 4}}, [](auto& x) { return vdot(x[0], x[1]); }},
      // ---- shapes ----
      {"reshape",
       {{2, 6}},
       [](auto& x) {
         return reshape(x[0], {3, -1}) * reshape(x[0], {3, 4});
       }},
      {"transpose",
       {{2, 3, 4}},
       [](auto& x) {
         return transpose(x[0], {2, 0, 1});
       },
       any,
       lin},
      {"transpose reversed", {{3, 4}}, [](auto& x) { return transpose(x[0]); }, any, lin},
      {"swapaxes", {{2, 3, 4}}, [](auto& x) { return swapaxes(x[0], 0, -1); }, any, lin},
      {"expand_dims", {{3, 4}}, [](auto& x) { return expand_dims(x[0], 1); }, any, lin},
      {"squeeze", {{3, 1, 4, 1}}, [](auto& x) { return squeeze(x[0]); }, any, lin},
      {"squeeze axis", {{3, 1, 4, 1}}, [](auto& x) { return squeeze(x[0], {-1}); }, any, lin},
      {"broadcast_to",
       {{3, 1}},
       [](auto& x) {
         return broadcast_to(x[0], {2, 3, 4});
       },
       any,
       lin},
      {"concatenate axis 0",
       {{2, 3}, {1, 3}, {3, 3}},
       [](auto& x) {
         return concatenate({x[0], x[1], x[2]}, 0);
       },
       any,
       lin},
      {"concatenate axis -1",
       {{2, 1}, {2, 3}},
       [](auto& x) {
         return concatenate({x[0], x[1]}, -1);
       },
       any,
       lin},
      {"split",
       {{2, 6}},
       [](auto& x) {
         auto p = split(x[0], 3, 1);
         return p[0] * p[2] + p[1];
       }},
      {"split_at",
       {{5, 2}},
       [](auto& x) {
         auto p = split_at(x[0], {1, 3});
         return p[1] * p[2] + p[0];
       }},
      {"stack axis 0",
       {{3}, {3}},
       [](auto& x) {
         return stack({x[0], x[1], x[0]});
       },
       any,
       lin},
      {"stack axis -1",
       {{2, 3}, {2, 3}},
       [](auto& x) {
         return stack({x[0], x[1]}, -1);
       },
       any,
       lin},
      {"slice", {{3, 7}}, [](auto& x) { return slice(x[0], 1, -6, 100, 2); }, any, lin},
      {"slice multi-axis",
       {{4, 5, 3}},
       [](auto& x) {
         return slice(x[0], {{1, std::nullopt, 2}, {-4, -1}});
       },
       any,
       lin},
      {"index", {{3, 4}}, [](auto& x) { return index(x[0], -1) * index(x[0], 0); }},
      {"take",
       {{3, 5}},
       [](auto& x) {
         return take(x[0], idx({2, 2}, {4, -1, 0, 4}), 1);
       },
       any,
       lin},
      {"take axis 0",
       {{4, 2}},
       [](auto& x) {
         return take(x[0], idx({3}, {1, 1, -4}), 0) * 2.f;
       },
       any,
       lin},
      {"take_along_axis",
       {{3, 4}},
       [](auto& x) {
         return take_along_axis(x[0], idx({3, 2}, {0, 3, 1, 1, -1, 2}), 1);
       },
       any,
       lin},
      {"take_along_axis broadcast",
       {{1, 4}},
       [](auto& x) {
         return take_along_axis(x[0], idx({3, 1}, {0, 3, 3}), 1);
       },
       any,
       lin},
      {"tril", {{2, 3, 4}}, [](auto& x) { return tril(x[0]); }, any, lin},
      {"triu k=1", {{3, 4}}, [](auto& x) { return triu(x[0], 1); }, any, lin},
      {"tril k=-1", {{4, 3}}, [](auto& x) { return tril(x[0], -1); }, any, lin},
      // ---- jax.nn ----
      {"softmax", {{3, 4}}, [](auto& x) { return softmax(x[0]); }},
      {"softmax axis 0", {{3, 4}}, [](auto& x) { return softmax(x[0], 0); }},
      {"log_softmax", {{3, 4}}, [](auto& x) { return log_softmax(x[0]); }},
      {"log_softmax axis 0", {{2, 3, 2}}, [](auto& x) { return log_softmax(x[0], 1); }},
  };
}

uint64_t seed_of(const std::string& name) { return std::hash<std::string>{}(name)&0xFFFFFF; }

std::vector<Array> make_inputs(const Case& c, uint64_t seed) {
  std::vector<Array> xs;
  for (size_t j = 0; j < c.shapes.size(); ++j)
    xs.push_back(Array::from(c.shapes[j], c.gen(seed, j, numel(c.shapes[j]))));
  return xs;
}

Array random_like(const Shape& s, uint64_t seed) {
  return Array::from(s, uniform(-1, 1)(seed, 0, numel(s)));
}

double weighted_sum(const Array& y, const std::vector<double>& w) {
  auto v = y.to_double();
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += v[i] * w[i];
  return s;
}

// Calls check(j, i, analytic, numeric) for every element i of every input j of the scalar
// function `scalar` (evaluated in float32), whose analytic gradient is `analytic`.
template <class Scalar, class Check>
void compare_fd(const std::vector<Array>& xs, const std::vector<Array>& analytic, double h,
                Scalar scalar, Check check) {
  for (size_t j = 0; j < xs.size(); ++j) {
    for (int64_t i = 0; i < xs[j].size(); ++i) {
      auto plus = xs, minus = xs;
      float x = xs[j].data<float>()[i];
      float xp = static_cast<float>(x + h), xm = static_cast<float>(x - h);
      plus[j] = xs[j].copy();
      plus[j].mutable_data<float>()[i] = xp;
      minus[j] = xs[j].copy();
      minus[j].mutable_data<float>()[i] = xm;
      double fd =
          (scalar(plus) - scalar(minus)) / (static_cast<double>(xp) - static_cast<double>(xm));
      check(j, i, static_cast<double>(analytic[j].data<float>()[i]), fd);
    }
  }
}

struct Report {
  int bad = 0;
  double worst = 0;
  std::string where;
  void operator()(size_t j, int64_t i, double an, double fd, double tol) {
    double err = std::fabs(an - fd) / std::max(1.0, std::fabs(fd));
    if (!(err <= tol)) {
      ++bad;
      if (!(err <= worst)) {
        worst = err;
        where = "input " + std::to_string(j) + " element " + std::to_string(i) + ": analytic " +
                std::to_string(an) + " vs finite difference " + std::to_string(fd);
      }
    }
  }
};

}  // namespace

TEST_CASE("every differentiable primitive matches central finite differences") {
  int checked = 0;
  for (const Case& c : table()) {
    uint64_t seed = seed_of(c.name);
    auto xs = make_inputs(c, seed);
    Array y = c.f(xs);
    REQUIRE_MESSAGE(y.is_float(), c.name);
    Array W = random_like(y.shape(), seed + 1000);
    auto w = W.to_double();
    auto L = [&](const std::vector<Array>& v) { return jnp::sum(c.f(v) * W); };
    std::vector<Array> g = grad(L)(xs);
    REQUIRE(g.size() == xs.size());
    Report report;
    for (size_t j = 0; j < xs.size(); ++j) CHECK_MESSAGE(g[j].shape() == xs[j].shape(), c.name);
    compare_fd(
        xs, g, c.h, [&](const std::vector<Array>& v) { return weighted_sum(c.f(v), w); },
        [&](size_t j, int64_t i, double an, double fd) { report(j, i, an, fd, c.tol); });
    INFO(c.name, ": ", report.where);
    CHECK(report.bad == 0);
    ++checked;
  }
  CHECK(checked == static_cast<int>(table().size()));
}

// Forward mode, column by column: jvp(f, x, e_ji) for every unit tangent e_ji, weighted by W,
// is d L / d x_ji, checked against the same central differences (and the same tolerance).
TEST_CASE("jvp of every primitive matches central finite differences") {
  int checked = 0;
  for (const Case& c : table()) {
    uint64_t seed = seed_of(c.name);
    auto xs = make_inputs(c, seed);
    Array W = random_like(c.f(xs).shape(), seed + 1000);
    auto w = W.to_double();
    std::vector<Array> analytic;
    for (size_t j = 0; j < xs.size(); ++j) {
      std::vector<float> col(static_cast<size_t>(xs[j].size()));
      for (int64_t i = 0; i < xs[j].size(); ++i) {
        std::vector<Array> t;
        for (size_t k = 0; k < xs.size(); ++k) t.push_back(jnp::zeros(xs[k].shape()));
        std::vector<float> e(static_cast<size_t>(xs[j].size()), 0.f);
        e[static_cast<size_t>(i)] = 1.f;
        t[j] = Array::from(xs[j].shape(), e);
        auto [y, ydot] = jvp(c.f, xs, t);
        REQUIRE_MESSAGE(ydot.shape() == y.shape(), c.name);
        col[static_cast<size_t>(i)] = static_cast<float>(weighted_sum(ydot, w));
      }
      analytic.push_back(Array::from(xs[j].shape(), col));
    }
    Report report;
    compare_fd(
        xs, analytic, c.h, [&](const std::vector<Array>& v) { return weighted_sum(c.f(v), w); },
        [&](size_t j, int64_t i, double an, double fd) { report(j, i, an, fd, c.tol); });
    INFO(c.name, ": ", report.where);
    CHECK(report.bad == 0);
    ++checked;
  }
  CHECK(checked == static_cast<int>(table().size()));
}

// jvp and vjp are one linear map and its transpose: <J v, u> == <v, J^T u> for random u, v.
// Both sides are float32 sums of the same products in different orders; 1e-5 relative (about
// 100 float32 ulps) covers the rounding of the <= 120-term sums in this table.
TEST_CASE("jvp is the transpose of vjp for every primitive: <J v, u> == <v, J^T u>") {
  for (const Case& c : table()) {
    uint64_t seed = seed_of(c.name) + 3;
    auto xs = make_inputs(c, seed);
    std::vector<Array> v;
    for (size_t j = 0; j < xs.size(); ++j) v.push_back(random_like(xs[j].shape(), seed + 10 + j));
    auto [y, pullback] = vjp(c.f, xs);
    Array u = random_like(y.shape(), seed + 99);
    auto [ct] = pullback(u);
    auto [y2, ydot] = jvp(c.f, xs, v);
    CHECK_MESSAGE(y2.to_float() == y.to_float(), c.name);  // jvp's primal is f(x), bit for bit
    double lhs = 0, rhs = 0, scale = 1;
    auto yd = ydot.to_double(), uu = u.to_double();
    for (size_t i = 0; i < yd.size(); ++i) lhs += yd[i] * uu[i], scale += std::fabs(yd[i] * uu[i]);
    for (size_t j = 0; j < xs.size(); ++j) {
      auto a = v[j].to_double(), b = ct[j].to_double();
      for (size_t i = 0; i < a.size(); ++i) rhs += a[i] * b[i], scale += std::fabs(a[i] * b[i]);
    }
    CHECK_MESSAGE(std::fabs(lhs - rhs) <= 1e-5 * scale, c.name, ": ", lhs, " vs ", rhs);
  }
}

// ---- the batching column: vmap(f) equals a loop of f over examples -------------------------

// f over separate arguments (vmap's in_axes are per argument), for rows of 1 to 3 inputs.
Array apply_vmap(const Case& c, const std::vector<Array>& xs, const std::vector<MapAxis>& axes) {
  auto f = [&](const auto&... a) { return c.f(std::vector<Array>{a...}); };
  switch (xs.size()) {
    case 1: return vmap(f, axes)(xs[0]);
    case 2: return vmap(f, axes)(xs[0], xs[1]);
    default: return vmap(f, axes)(xs[0], xs[1], xs[2]);
  }
}

// Rows whose primitives have no batching rule yet (each throws "vmap: no batching rule for
// <prim> yet"); a row leaves this list when its primitive joins the table.
const std::set<std::string> kNotBatchedYet = {"concatenate axis 0",
                                              "concatenate axis -1",
                                              "split",
                                              "split_at",
                                              "stack axis 0",
                                              "stack axis -1",
                                              "slice",
                                              "slice multi-axis",
                                              "index",
                                              "take",
                                              "take axis 0",
                                              "take_along_axis",
                                              "take_along_axis broadcast",
                                              "tril",
                                              "triu k=1",
                                              "tril k=-1",
                                              "softmax",
                                              "softmax axis 0"};

TEST_CASE("vmap of every batchable primitive equals a loop over examples (axis 0, last, none)") {
  constexpr int64_t B = 3;
  std::set<std::string> not_batched;
  for (const Case& c : table()) {
    uint64_t seed = seed_of(c.name) + 5;
    std::vector<std::vector<Array>> ex;  // ex[b][j]: example b of input j
    for (int64_t b = 0; b < B; ++b) ex.push_back(make_inputs(c, seed + 100 * b));
    size_t n = c.shapes.size();
    // Layouts: every input mapped at axis 0; every input mapped at its last axis; and, for
    // several inputs, input 0 alone mapped (the others shared: example 0's values).
    for (int layout = 0; layout < (n > 1 ? 3 : 2); ++layout) {
      std::vector<Array> args;
      std::vector<MapAxis> axes;
      for (size_t j = 0; j < n; ++j) {
        std::vector<Array> col;
        for (int64_t b = 0; b < B; ++b) col.push_back(ex[b][j]);
        if (layout == 2 && j > 0) {
          args.push_back(ex[0][j]);
          axes.push_back(none);
        } else {
          int64_t ax = layout == 1 ? static_cast<int64_t>(c.shapes[j].size()) : 0;
          args.push_back(jnp::stack(col, ax));
          axes.push_back(layout == 1 ? -1 : 0);
        }
      }
      Array got;
      try {
        got = apply_vmap(c, args, axes);
      } catch (const std::invalid_argument& e) {
        std::string what = e.what();
        REQUIRE_MESSAGE(what.rfind("vmap: no batching rule for ", 0) == 0, c.name, ": ", what);
        not_batched.insert(c.name);
        break;
      }
      for (int64_t b = 0; b < B; ++b) {
        std::vector<Array> xb = ex[b];
        if (layout == 2)
          for (size_t j = 1; j < n; ++j) xb[j] = ex[0][j];
        auto want = c.f(xb).to_float();
        auto have = jnp::index(got, b).to_float();
        REQUIRE_MESSAGE(have.size() == want.size(), c.name);
        // Elementwise, shape and reduction rules run the same kernels on the same values in
        // the same order: bit for bit. Products go through one larger sgemm, whose blocking may
        // round differently: 1e-6 relative (a few float32 ulps).
        bool product = c.name.rfind("matmul", 0) == 0 || c.name.rfind("dot", 0) == 0 ||
                       c.name.rfind("vdot", 0) == 0;
        for (size_t k = 0; k < want.size(); ++k) {
          if (product)
            CHECK_MESSAGE(std::fabs(have[k] - want[k]) <= 1e-6 * std::max(1.f, std::fabs(want[k])),
                          c.name, " layout ", layout);
          else
            CHECK_MESSAGE((have[k] == want[k] || (std::isnan(have[k]) && std::isnan(want[k]))),
                          c.name, " layout ", layout, " example ", b, " element ", k, ": ", have[k],
                          " vs ", want[k]);
        }
      }
    }
  }
  CHECK(not_batched == kNotBatchedYet);
}

TEST_CASE("the table covers every differentiable primitive of core/ops.hpp") {
  std::set<std::string> rows;
  for (const Case& c : table()) rows.insert(c.name.substr(0, c.name.find(' ')));
  for (const char* p : {"negative", "exp",          "log",         "log1p",      "expm1",
                        "tanh",     "sqrt",         "rsqrt",       "erf",        "abs",
                        "sign",     "square",       "astype",      "add",        "subtract",
                        "multiply", "divide",       "power",       "maximum",    "minimum",
                        "where",    "clip",         "sum",         "mean",       "max",
                        "min",      "var",          "logsumexp",   "matmul",     "dot",
                        "vdot",     "reshape",      "transpose",   "swapaxes",   "expand_dims",
                        "squeeze",  "broadcast_to", "concatenate", "split",      "split_at",
                        "stack",    "slice",        "index",       "take",       "take_along_axis",
                        "tril",     "triu",         "softmax",     "log_softmax"})
    CHECK_MESSAGE(rows.count(p), "no grad-check row for ", p);
}

TEST_CASE("second derivatives: grad of grad matches finite differences of grad") {
  // G(x) = <grad L(x), v> with L = sum(tanh(f(x)) * w): tanh makes even linear primitives'
  // transposes (pad, scatter-add, ...) run on traced values in the second backward pass.
  std::set<std::string> chosen = {"exp",
                                  "log",
                                  "tanh",
                                  "sqrt",
                                  "rsqrt",
                                  "erf",
                                  "divide",
                                  "power",
                                  "multiply",
                                  "maximum broadcast",
                                  "matmul",
                                  "matmul batched",
                                  "matmul batch @ matrix",
                                  "matmul vector @ matrix",
                                  "sum axis 1",
                                  "max axis 1",
                                  "var axis 0",
                                  "logsumexp axis 1",
                                  "broadcast_to",
                                  "transpose",
                                  "concatenate axis 0",
                                  "split",
                                  "slice multi-axis",
                                  "index",
                                  "take",
                                  "take_along_axis broadcast",
                                  "tril",
                                  "softmax",
                                  "log_softmax",
                                  "where broadcast"};
  int checked = 0;
  for (const Case& c : table()) {
    if (!chosen.count(c.name)) continue;
    uint64_t seed = seed_of(c.name) + 7;
    auto xs = make_inputs(c, seed);
    Array W = random_like(c.f(xs).shape(), seed + 1000);
    std::vector<Array> V;
    for (size_t j = 0; j < xs.size(); ++j) V.push_back(random_like(xs[j].shape(), seed + 2000 + j));
    auto L = [&](const std::vector<Array>& v) { return jnp::sum(jnp::tanh(c.f(v)) * W); };
    auto G = [&](const std::vector<Array>& v) { return autodiff::vdot_all(grad(L)(v), V); };
    std::vector<Array> hv = grad(G)(xs);
    // Forward over reverse gives the same Hessian-vector product: H V = d/de grad L(x + e V),
    // up to float32 rounding of the different evaluation order (2e-4 relative, stated loosely:
    // the rows chain up to six primitives).
    auto [gx, hv_fwd] = jvp([&](const std::vector<Array>& v) { return grad(L)(v); }, xs, V);
    for (size_t j = 0; j < xs.size(); ++j) {
      auto a = hv[j].to_double(), b = hv_fwd[j].to_double();
      for (size_t i = 0; i < a.size(); ++i)
        CHECK_MESSAGE(std::fabs(a[i] - b[i]) <= 2e-4 * std::max(1.0, std::fabs(a[i])), c.name,
                      " input ", j, " element ", i, ": ", a[i], " vs ", b[i]);
    }
    Report report;
    compare_fd(
        xs, hv, 1e-2, [&](const std::vector<Array>& v) { return G(v).template item<double>(); },
        [&](size_t j, int64_t i, double an, double fd) { report(j, i, an, fd, 2e-2); });
    INFO(c.name, ": ", report.where);
    CHECK(report.bad == 0);
    ++checked;
  }
  CHECK(checked == static_cast<int>(chosen.size()));
}

// ---- the conventions at the kinks, exactly (as JAX) ---------------------------------------------

TEST_CASE("kink conventions: abs, sign, maximum/minimum ties, max ties, clip bounds, sqrt at 0") {
  CHECK(grad([](const Array& x) { return jnp::abs(x); })(Array(0.f)).item<float>() == 0.f);
  CHECK(grad([](const Array& x) { return jnp::abs(x); })(Array(-2.f)).item<float>() == -1.f);
  CHECK(grad([](const Array& x) { return jnp::sign(x); })(Array(0.f)).item<float>() == 0.f);
  CHECK(grad([](const Array& x) { return jnp::sign(x); })(Array(1.5f)).item<float>() == 0.f);

  auto [ga, gb] = grad<0, 1>([](const Array& a, const Array& b) { return jnp::maximum(a, b); })(
      Array(1.f), Array(1.f));
  CHECK(ga.item<float>() == 0.5f);
  CHECK(gb.item<float>() == 0.5f);
  auto [ha, hb] = grad<0, 1>([](const Array& a, const Array& b) { return jnp::minimum(a, b); })(
      Array(-3.f), Array(-3.f));
  CHECK(ha.item<float>() == 0.5f);
  CHECK(hb.item<float>() == 0.5f);
  // relu(x) = maximum(x, 0) at 0: half, as jax.numpy.maximum (jax.nn.relu has its own rule).
  CHECK(
      grad([](const Array& x) { return jnp::maximum(x, Array(0.f)); })(Array(0.f)).item<float>() ==
      0.5f);

  // Reduction ties share the gradient equally.
  Array g = grad([](const Array& x) { return jnp::max(x); })(Array::vector({1.f, 3.f, 3.f, 3.f}));
  CHECK(g.to_float() == std::vector<float>{0.f, 1.f / 3, 1.f / 3, 1.f / 3});
  Array gmin = grad([](const Array& x) { return jnp::sum(jnp::min(x, {1})); })(
      Array::matrix({{2, 2}, {1, 5}}));
  CHECK(gmin.to_float() == std::vector<float>{0.5f, 0.5f, 1.f, 0.f});

  // clip = minimum(maximum(x, lo), hi): half a gradient on either bound, full inside, none out.
  auto dclip = [](float x) {
    return grad([](const Array& v) { return jnp::clip(v, 0.f, 1.f); })(Array(x)).item<float>();
  };
  CHECK(dclip(0.f) == 0.5f);
  CHECK(dclip(1.f) == 0.5f);
  CHECK(dclip(0.5f) == 1.f);
  CHECK(dclip(2.f) == 0.f);

  CHECK(std::isinf(grad([](const Array& x) { return jnp::sqrt(x); })(Array(0.f)).item<float>()));
  // d/dy x^y = x^y log x, taken as 0 at x = 0; d/dx x^2 at 0 is 0.
  auto [px, py] = grad<0, 1>([](const Array& x, const Array& y) { return jnp::power(x, y); })(
      Array(0.f), Array(2.f));
  CHECK(px.item<float>() == 0.f);
  CHECK(py.item<float>() == 0.f);
}

TEST_CASE("gradients of repeated indices accumulate (scatter-add)") {
  Array x = Array::vector({1.f, 2.f, 3.f});
  Array g = grad([](const Array& v) {
    return jnp::sum(jnp::take(v, Array::from({4}, std::vector<int32_t>{2, 2, -1, 0})));
  })(x);
  CHECK(g.to_float() == std::vector<float>{1.f, 0.f, 3.f});
  Array gs = grad([](const Array& v) {
    auto p = jnp::split(v, 3);
    return jnp::sum(p[0] * 2.f + p[2] * 5.f);
  })(x);
  CHECK(gs.to_float() == std::vector<float>{2.f, 0.f, 5.f});
}
