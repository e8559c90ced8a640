// Every primitive of core/ops.hpp on small hand-computable inputs: values, shapes, dtype
// promotion, broadcasting, numerical stability and the exact error messages.
#include "core/ops.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <doctest/doctest.h>

#include "core/autodiff.hpp"
#include "core/parallel.hpp"

using namespace flaxpp;
using namespace flaxpp::jnp;

namespace {
std::vector<double> V(const Array& a) { return a.to_double(); }
Array vec(std::vector<float> v) { return Array::from({static_cast<int64_t>(v.size())}, v); }
Array ivec(std::vector<int32_t> v) { return Array::from({static_cast<int64_t>(v.size())}, v); }
Array iarr(const Shape& s, std::vector<int32_t> v) { return Array::from(s, v); }
Array iota(const Shape& s) { return reshape(arange(0, static_cast<double>(numel(s)), 1), s); }
// Element-wise closeness for transcendental results.
bool close(const Array& a, std::vector<double> want, double tol = 1e-6) {
  auto got = V(a);
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= tol * std::max(1.0, std::fabs(want[i])))) return false;
  return true;
}
constexpr float kInf = std::numeric_limits<float>::infinity();
}  // namespace

// ---- creation ---------------------------------------------------------------------------------

TEST_CASE("zeros, ones, full, *_like") {
  CHECK(V(zeros({2, 2})) == std::vector<double>{0, 0, 0, 0});
  CHECK(zeros({2}, DType::int32).dtype() == DType::int32);
  CHECK(V(ones({3}, DType::bool_)) == std::vector<double>{1, 1, 1});
  CHECK(V(full({2}, 2.5f)) == std::vector<double>{2.5, 2.5});
  CHECK(full({2}, int32_t{4}).dtype() == DType::int32);
  Array x = iarr({2, 1}, {5, 6});
  CHECK(zeros_like(x).shape() == Shape{2, 1});
  CHECK(zeros_like(x).dtype() == DType::int32);
  CHECK(V(ones_like(vec({7, 8}))) == std::vector<double>{1, 1});
}

TEST_CASE("arange: both overloads, as np.arange") {
  CHECK(arange(5).dtype() == DType::int32);
  CHECK(V(arange(5)) == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(arange(-3).shape() == Shape{0});
  CHECK(V(arange(0, 1, 0.25)) == std::vector<double>{0, 0.25, 0.5, 0.75});
  CHECK(V(arange(1, 0, -0.25)) == std::vector<double>{1, 0.75, 0.5, 0.25});
  CHECK(V(arange(2, 11, 3, DType::int32)) == std::vector<double>{2, 5, 8});
  CHECK(arange(3, 3).size() == 0);
  // np.arange(0, 1, 0.1, dtype=float32): 10 values, x[i] = i * float32(0.1) in float32.
  Array t = arange(0, 1, 0.1);
  REQUIRE(t.size() == 10);
  CHECK(t.data<float>()[7] == 7.f * 0.1f);
  CHECK_THROWS_WITH_AS(arange(0, 1, 0), "arange: step must be nonzero", std::invalid_argument);
}

TEST_CASE("astype converts like NumPy (truncation toward zero, nonzero is true)") {
  CHECK(V(astype(vec({2.7f, -2.7f, 0.f}), DType::int32)) == std::vector<double>{2, -2, 0});
  CHECK(astype(ivec({1, 2}), DType::float32).dtype() == DType::float32);
  CHECK(V(astype(vec({0.f, -0.5f, 3.f}), DType::bool_)) == std::vector<double>{0, 1, 1});
  CHECK(V(astype(Array::from_bool({2}, {true, false}), DType::float32)) ==
        std::vector<double>{1, 0});
}

// ---- elementwise ------------------------------------------------------------------------------

TEST_CASE("arithmetic with broadcasting") {
  Array a = Array::matrix({{1}, {2}});  // (2,1)
  Array b = vec({10, 20, 30});          // (3,)
  Array s = a + b;
  CHECK(s.shape() == Shape{2, 3});
  CHECK(V(s) == std::vector<double>{11, 21, 31, 12, 22, 32});
  CHECK(V(b - a) == std::vector<double>{9, 19, 29, 8, 18, 28});
  CHECK(V(a * b) == std::vector<double>{10, 20, 30, 20, 40, 60});
  CHECK(V(b / a) == std::vector<double>{10, 20, 30, 5, 10, 15});
  CHECK(V(-b) == std::vector<double>{-10, -20, -30});
  CHECK(V(2.f * b - 1.f) == std::vector<double>{19, 39, 59});
  CHECK(V(1.f / vec({4, 0})) == std::vector<double>{0.25, kInf});
  // (2,3,1) with (3,4) -> (2,3,4)
  CHECK((zeros({2, 3, 1}) + zeros({3, 4})).shape() == Shape{2, 3, 4});
  CHECK((Array(1.f) + zeros({0, 3})).shape() == Shape{0, 3});
}

TEST_CASE("dtype promotion: int32 + float32 -> float32, int / int -> float32, bool -> other") {
  CHECK((ivec({1, 2}) + vec({0.5f, 0.5f})).dtype() == DType::float32);
  CHECK(V(ivec({1, 2}) + vec({0.5f, 0.5f})) == std::vector<double>{1.5, 2.5});
  CHECK((ivec({1, 2}) + ivec({3, 4})).dtype() == DType::int32);
  CHECK((ivec({7}) * Array(int32_t{3})).dtype() == DType::int32);
  Array q = ivec({7, -7}) / ivec({2, 2});
  CHECK(q.dtype() == DType::float32);
  CHECK(V(q) == std::vector<double>{3.5, -3.5});
  CHECK((Array::from_bool({2}, {true, false}) + ivec({1, 1})).dtype() == DType::int32);
  CHECK((Array::from_bool({1}, {true}) * vec({2})).dtype() == DType::float32);
  CHECK(negative(ivec({3})).dtype() == DType::int32);
  CHECK(where(Array(true), ivec({1}), vec({2})).dtype() == DType::float32);
}

TEST_CASE("unary functions at known points") {
  CHECK(close(exp(vec({0, 1, -1})), {1, M_E, 1 / M_E}));
  CHECK(close(log(vec({1, static_cast<float>(M_E)})), {0, 1}));
  CHECK(V(log(vec({0}))) == std::vector<double>{-kInf});
  CHECK(close(log1p(vec({0, 1e-7f})), {0, 1e-7}, 1e-12));
  CHECK(close(expm1(vec({0, 1e-7f})), {0, 1e-7}, 1e-12));
  CHECK(close(tanh(vec({0, 1, -30})), {0, std::tanh(1.0), -1}));
  CHECK(V(sqrt(vec({4, 0, 2.25f}))) == std::vector<double>{2, 0, 1.5});
  CHECK(V(rsqrt(vec({4, 0.25f}))) == std::vector<double>{0.5, 2});
  CHECK(close(erf(vec({0, 1, -10})), {0, std::erf(1.0), -1}));
  CHECK(V(abs(vec({-2, 0, 3}))) == std::vector<double>{2, 0, 3});
  CHECK(V(abs(ivec({-2, 5}))) == std::vector<double>{2, 5});
  CHECK(abs(ivec({-2})).dtype() == DType::int32);
  CHECK(V(sign(vec({-2, 0, 3}))) == std::vector<double>{-1, 0, 1});
  CHECK(V(sign(ivec({-4, 0, 9}))) == std::vector<double>{-1, 0, 1});
  CHECK(V(square(vec({-3, 0.5f}))) == std::vector<double>{9, 0.25});
  CHECK(V(power(vec({2, 4, 9}), vec({3, 0.5f, 0}))) == std::vector<double>{8, 2, 1});
  CHECK(V(power(Array::matrix({{2}, {3}}), vec({1, 2}))) == std::vector<double>{2, 4, 3, 9});
  CHECK(std::isnan(sqrt(vec({-1})).item<float>()));
}

TEST_CASE("maximum, minimum, where, clip") {
  CHECK(V(maximum(vec({1, 5, -2}), Array(0.f))) == std::vector<double>{1, 5, 0});
  CHECK(V(minimum(Array::matrix({{1}, {4}}), vec({2, 3}))) == std::vector<double>{1, 1, 2, 3});
  CHECK(maximum(ivec({1, 5}), ivec({3, 2})).dtype() == DType::int32);
  CHECK(std::isnan(V(maximum(vec({NAN}), vec({1})))[0]));  // NaN propagates, as NumPy
  Array c = Array::from_bool({2, 1}, {true, false});
  CHECK(V(where(c, vec({1, 2}), Array(0.f))) == std::vector<double>{1, 2, 0, 0});
  CHECK(where(c, vec({1, 2}), Array(0.f)).shape() == Shape{2, 2});
  CHECK(V(where(ivec({0, 3}), vec({1, 1}), vec({-1, -1}))) ==
        std::vector<double>{-1, 1});  // nonzero = true
  CHECK(V(clip(vec({-2, 0.5f, 3}), 0.f, 1.f)) == std::vector<double>{0, 0.5, 1});
}

TEST_CASE("comparisons return bool; logical_not") {
  Array a = vec({1, 2, 3}), b = vec({2, 2, 2});
  CHECK(equal(a, b).dtype() == DType::bool_);
  CHECK(V(equal(a, b)) == std::vector<double>{0, 1, 0});
  CHECK(V(not_equal(a, b)) == std::vector<double>{1, 0, 1});
  CHECK(V(less(a, b)) == std::vector<double>{1, 0, 0});
  CHECK(V(less_equal(a, b)) == std::vector<double>{1, 1, 0});
  CHECK(V(greater(a, b)) == std::vector<double>{0, 0, 1});
  CHECK(V(greater_equal(a, b)) == std::vector<double>{0, 1, 1});
  CHECK(V(equal(ivec({1, 2}), vec({1, 2.5f}))) == std::vector<double>{1, 0});  // int vs float
  CHECK(greater(Array::matrix({{1}, {3}}), vec({2, 0})).shape() == Shape{2, 2});
  CHECK(V(logical_not(Array::from_bool({2}, {true, false}))) == std::vector<double>{0, 1});
  CHECK(V(logical_not(vec({0, 2}))) == std::vector<double>{1, 0});
}

// ---- reductions -------------------------------------------------------------------------------

TEST_CASE("sum, mean over axis sets and keepdims") {
  Array x = iota({2, 3});  // [[0,1,2],[3,4,5]]
  CHECK(sum(x).ndim() == 0);
  CHECK(sum(x).item<float>() == 15.f);
  CHECK(V(sum(x, {0})) == std::vector<double>{3, 5, 7});
  CHECK(V(sum(x, {1})) == std::vector<double>{3, 12});
  CHECK(sum(x, {1}, true).shape() == Shape{2, 1});
  CHECK(V(sum(x, {-1}, true)) == std::vector<double>{3, 12});
  CHECK(sum(x, {0, 1}, true).shape() == Shape{1, 1});
  CHECK(sum(iota({2, 3, 4}), {0, 2}).shape() == Shape{3});
  CHECK(V(sum(iota({2, 3, 4}), {0, 2})) == std::vector<double>{60, 92, 124});
  CHECK(V(mean(x, {0})) == std::vector<double>{1.5, 2.5, 3.5});
  CHECK(mean(x).item<float>() == 2.5f);
  CHECK(sum(zeros({0, 2}), {0}).shape() == Shape{2});
  // Integer sums stay integer (bool sums count), means are float32.
  CHECK(sum(ivec({1, 2, 3})).dtype() == DType::int32);
  CHECK(sum(Array::from_bool({3}, {true, true, false})).item<int32_t>() == 2);
  CHECK(mean(ivec({1, 2})).dtype() == DType::float32);
  CHECK(mean(ivec({1, 2})).item<float>() == 1.5f);
}

TEST_CASE("max, min, var, argmax, logsumexp") {
  Array x = Array::matrix({{1, 5, 3}, {4, 2, 6}});
  CHECK(max(x).item<float>() == 6.f);
  CHECK(V(max(x, {0})) == std::vector<double>{4, 5, 6});
  CHECK(V(min(x, {1})) == std::vector<double>{1, 2});
  CHECK(min(x, {1}, true).shape() == Shape{2, 1});
  CHECK(max(ivec({3, -1})).dtype() == DType::int32);
  CHECK(V(var(vec({1, 2, 3, 4}))) == std::vector<double>{1.25});
  CHECK(V(var(x, {0})) == std::vector<double>{2.25, 2.25, 2.25});
  Array am = argmax(x, 1);
  CHECK(am.dtype() == DType::int32);
  CHECK(V(am) == std::vector<double>{1, 2});
  CHECK(V(argmax(x, 0)) == std::vector<double>{1, 0, 1});
  CHECK(argmax(x, -1, true).shape() == Shape{2, 1});
  CHECK(V(argmax(vec({3, 7, 7}), 0)) == std::vector<double>{1});  // first of ties
  CHECK(close(logsumexp(vec({0, 0})), {std::log(2.0)}));
  CHECK(close(logsumexp(x, {1}), {std::log(std::exp(1.) + std::exp(5.) + std::exp(3.)),
                                  std::log(std::exp(4.) + std::exp(2.) + std::exp(6.))}));
  CHECK(logsumexp(x, {1}, true).shape() == Shape{2, 1});
  CHECK(V(logsumexp(vec({-kInf, -kInf}))) == std::vector<double>{-kInf});
}

TEST_CASE("stability: logsumexp, log_softmax and softmax of large inputs") {
  Array big = vec({1e4f, 1e4f});
  CHECK(close(logsumexp(big), {1e4 + std::log(2.0)}, 1e-7));
  Array ls = log_softmax(vec({1e4f, 0.f, -1e4f}));
  for (double v : V(ls)) CHECK(std::isfinite(v));
  CHECK(V(ls) == std::vector<double>{0, -1e4, -2e4});
  CHECK(V(softmax(vec({1000, 1000}))) == std::vector<double>{0.5, 0.5});
  CHECK(V(softmax(vec({-1000, 0}))) == std::vector<double>{0, 1});
  CHECK(close(log_softmax(vec({1e4f, 1e4f})), {-std::log(2.0), -std::log(2.0)}));
}

TEST_CASE("softmax and log_softmax closed forms") {
  Array x = Array::matrix({{0, std::log(3.f)}, {1, 1}});
  CHECK(close(softmax(x), {0.25, 0.75, 0.5, 0.5}));
  CHECK(close(softmax(x, 0), {1 / (1 + M_E), 3 / (3 + M_E), M_E / (1 + M_E), M_E / (3 + M_E)}));
  CHECK(close(log_softmax(x), {std::log(0.25), std::log(0.75), std::log(0.5), std::log(0.5)}));
  CHECK(softmax(zeros({2, 3, 4}), 1).shape() == Shape{2, 3, 4});
  // Its gradient: softmax has zero gradient along the all-ones direction.
  Array g = grad([](const Array& v) { return sum(softmax(v)); })(vec({0.3f, -1.f, 2.f}));
  CHECK(close(g, {0, 0, 0}, 1e-7));
}

// ---- linear algebra ---------------------------------------------------------------------------

TEST_CASE("matmul: 2-D, batched, broadcast batches, 1-D operands") {
  Array a = Array::matrix({{1, 2}, {3, 4}}), b = Array::matrix({{5, 6}, {7, 8}});
  CHECK(V(matmul(a, b)) == std::vector<double>{19, 22, 43, 50});
  Array v = vec({1, 1});
  CHECK(matmul(a, v).shape() == Shape{2});
  CHECK(V(matmul(a, v)) == std::vector<double>{3, 7});
  CHECK(V(matmul(v, a)) == std::vector<double>{4, 6});
  CHECK(matmul(v, v).ndim() == 0);
  CHECK(matmul(v, v).item<float>() == 2.f);
  Array batch = stack({a, b});  // (2,2,2)
  CHECK(V(matmul(batch, a)) == std::vector<double>{7, 10, 15, 22, 23, 34, 31, 46});
  CHECK(V(matmul(a, batch)) == std::vector<double>{7, 10, 15, 22, 19, 22, 43, 50});
  CHECK(matmul(zeros({2, 1, 3, 4}), zeros({5, 4, 6})).shape() == Shape{2, 5, 3, 6});
  CHECK(matmul(zeros({2, 3, 4}), zeros({4})).shape() == Shape{2, 3});
  CHECK(matmul(zeros({4}), zeros({2, 4, 3})).shape() == Shape{2, 3});
  CHECK(matmul(zeros({3, 0}), zeros({0, 2})).shape() == Shape{3, 2});
  CHECK(V(matmul(ones({2, 0}), ones({0, 2}))) == std::vector<double>{0, 0, 0, 0});
}

TEST_CASE("dot and vdot") {
  Array a = Array::matrix({{1, 2}, {3, 4}});
  CHECK(V(dot(a, vec({1, 0}))) == std::vector<double>{1, 3});
  CHECK(dot(vec({1, 2, 3}), vec({4, 5, 6})).item<float>() == 32.f);
  CHECK(V(dot(Array(2.f), a)) == std::vector<double>{2, 4, 6, 8});
  CHECK(vdot(a, a).item<float>() == 30.f);
  CHECK(vdot(a, vec({1, 1, 1, 1})).item<float>() == 10.f);  // flattens
}

// ---- shapes -----------------------------------------------------------------------------------

TEST_CASE("reshape, transpose, swapaxes, expand_dims, squeeze, broadcast_to") {
  Array x = iota({2, 3});
  CHECK(reshape(x, {3, -1}).shape() == Shape{3, 2});
  CHECK(reshape(x, {-1}).shape() == Shape{6});
  CHECK(reshape(Array(1.f), {1, 1}).shape() == Shape{1, 1});
  CHECK(V(transpose(x)) == std::vector<double>{0, 3, 1, 4, 2, 5});
  Array y = iota({2, 3, 4});
  Array t = transpose(y, {2, 0, 1});
  CHECK(t.shape() == Shape{4, 2, 3});
  CHECK(t.data<float>()[1] == 4.f);  // t[0,0,1] = y[0,1,0]
  CHECK(swapaxes(y, 0, -1).shape() == Shape{4, 3, 2});
  CHECK(V(swapaxes(x, 0, 1)) == V(transpose(x)));
  CHECK(expand_dims(x, 0).shape() == Shape{1, 2, 3});
  CHECK(expand_dims(x, -1).shape() == Shape{2, 3, 1});
  CHECK(squeeze(zeros({1, 3, 1})).shape() == Shape{3});
  CHECK(squeeze(zeros({1, 3, 1}), {0}).shape() == Shape{3, 1});
  Array bt = broadcast_to(vec({1, 2}), {3, 2});
  CHECK(V(bt) == std::vector<double>{1, 2, 1, 2, 1, 2});
  CHECK(V(broadcast_to(Array::matrix({{1}, {2}}), {2, 3})) ==
        std::vector<double>{1, 1, 1, 2, 2, 2});
  CHECK(broadcast_to(ivec({4}), {2, 2}).dtype() == DType::int32);
}

TEST_CASE("concatenate, split, split_at, stack") {
  Array a = iota({2, 2}), b = Array::matrix({{9, 9}});
  Array c = concatenate({a, b});
  CHECK(c.shape() == Shape{3, 2});
  CHECK(V(c) == std::vector<double>{0, 1, 2, 3, 9, 9});
  CHECK(V(concatenate({a, a}, -1)) == std::vector<double>{0, 1, 0, 1, 2, 3, 2, 3});
  CHECK(concatenate({ivec({1}), vec({0.5f})}).dtype() == DType::float32);  // promotes
  CHECK(V(concatenate({ivec({1}), vec({0.5f})})) == std::vector<double>{1, 0.5});
  CHECK(concatenate({zeros({0, 2}), a}).shape() == Shape{2, 2});

  auto parts = split(iota({6}), 3);
  REQUIRE(parts.size() == 3);
  CHECK(V(parts[1]) == std::vector<double>{2, 3});
  auto cols = split(iota({2, 4}), 2, -1);
  CHECK(V(cols[1]) == std::vector<double>{2, 3, 6, 7});
  auto at = split_at(iota({5}), {1, 3});
  REQUIRE(at.size() == 3);
  CHECK(V(at[0]) == std::vector<double>{0});
  CHECK(V(at[1]) == std::vector<double>{1, 2});
  CHECK(V(at[2]) == std::vector<double>{3, 4});
  auto neg = split_at(iota({5}), {-2, 10});  // Python slice semantics, like np.split
  CHECK(V(neg[0]) == std::vector<double>{0, 1, 2});
  CHECK(V(neg[1]) == std::vector<double>{3, 4});
  CHECK(neg[2].size() == 0);

  Array s = stack({vec({1, 2}), vec({3, 4})});
  CHECK(s.shape() == Shape{2, 2});
  CHECK(V(s) == std::vector<double>{1, 2, 3, 4});
  Array s1 = stack({vec({1, 2}), vec({3, 4})}, 1);
  CHECK(V(s1) == std::vector<double>{1, 3, 2, 4});
  CHECK(stack({Array(1.f), Array(2.f)}).shape() == Shape{2});
}

TEST_CASE("slice with Python semantics; index") {
  Array x = iota({7});
  CHECK(V(slice(x, 0, 1, 4)) == std::vector<double>{1, 2, 3});
  CHECK(V(slice(x, 0, -3, 100)) == std::vector<double>{4, 5, 6});  // clamps stop
  CHECK(V(slice(x, 0, -100, 2)) == std::vector<double>{0, 1});     // clamps start
  CHECK(V(slice(x, 0, 0, 7, 3)) == std::vector<double>{0, 3, 6});
  CHECK(V(slice(x, 0, 1, -1, 2)) == std::vector<double>{1, 3, 5});
  CHECK(slice(x, 0, 5, 2).shape() == Shape{0});
  CHECK(slice(x, 0, 0, 7).shares_buffer_with(x));  // the whole axis: no copy
  Array m = iota({3, 4});
  CHECK(V(slice(m, 1, 1, 3)) == std::vector<double>{1, 2, 5, 6, 9, 10});
  Array ms = slice(m, {{1, std::nullopt}, {0, std::nullopt, 2}});  // m[1:, ::2]
  CHECK(ms.shape() == Shape{2, 2});
  CHECK(V(ms) == std::vector<double>{4, 6, 8, 10});
  CHECK(V(slice(m, {{-1}})) == std::vector<double>{8, 9, 10, 11});  // m[-1:]
  CHECK(slice(ivec({1, 2, 3}), 0, 1, 3).dtype() == DType::int32);

  CHECK(V(index(m, 1)) == std::vector<double>{4, 5, 6, 7});
  CHECK(index(m, -1).shape() == Shape{4});
  CHECK(V(index(m, -1)) == std::vector<double>{8, 9, 10, 11});
  CHECK(index(x, 2).ndim() == 0);
  CHECK(index(x, 2).item<float>() == 2.f);
}

TEST_CASE(
    "large slices, their transposes (pad) and zeros split over the pool equal plain indexing") {
  // (1, 1200, 5, 64)[:, 7:1190:2, ::2, 1:63] has 110k elements, enough to be cut into blocks of
  // its first axis of extent > 1; the leading 1 checks that the cut skips it.
  const int64_t A = 1200, Bd = 5, C = 64;
  Array x = iota({1, A, Bd, C});
  std::vector<Slice> sl = {{0, std::nullopt}, {7, 1190, 2}, {0, std::nullopt, 2}, {1, 63}};
  const int64_t na = 592, nb = 3, nc = 62;
  const int saved = num_threads();
  for (int threads : {1, 2, 3}) {
    CAPTURE(threads);
    set_num_threads(threads);
    Array y = slice(x, sl);
    REQUIRE(y.shape() == Shape{1, na, nb, nc});
    const float* py = y.data<float>();
    int64_t bad = 0;
    for (int64_t i = 0; i < na; ++i)
      for (int64_t j = 0; j < nb; ++j)
        for (int64_t k = 0; k < nc; ++k)
          bad += py[(i * nb + j) * nc + k] !=
                 static_cast<float>(((7 + 2 * i) * Bd + 2 * j) * C + 1 + k);
    CHECK(bad == 0);
    // d/dx sum(slice(x) * w) = w scattered into zeros of x's shape
    Array w = iota(y.shape()) + 1.f;
    Array g = grad([&](const Array& v) { return sum(slice(v, sl) * w); })(x);
    REQUIRE(g.shape() == x.shape());
    const float* pg = g.data<float>();
    const float* pw = w.data<float>();
    std::vector<int64_t> hit(static_cast<size_t>(x.size()), -1);
    for (int64_t i = 0; i < na; ++i)
      for (int64_t j = 0; j < nb; ++j)
        for (int64_t k = 0; k < nc; ++k)
          hit[static_cast<size_t>(((7 + 2 * i) * Bd + 2 * j) * C + 1 + k)] = (i * nb + j) * nc + k;
    bad = 0;
    for (int64_t e = 0; e < x.size(); ++e)
      bad += pg[e] != (hit[static_cast<size_t>(e)] < 0 ? 0.f : pw[hit[static_cast<size_t>(e)]]);
    CHECK(bad == 0);
    Array z = zeros({(int64_t{1} << 20) + 3});  // 4 MiB and a few bytes: 17 pool chunks
    const float* pz = z.data<float>();
    CHECK(std::count(pz, pz + z.size(), 0.f) == z.size());
  }
  set_num_threads(saved);
}

TEST_CASE("take, take_along_axis, one_hot") {
  Array x = iota({3, 4});
  Array t = take(x, iarr({2}, {2, -3}), 0);  // rows 2 and 0
  CHECK(t.shape() == Shape{2, 4});
  CHECK(V(t) == std::vector<double>{8, 9, 10, 11, 0, 1, 2, 3});
  Array t1 = take(x, iarr({2, 2}, {0, 3, 3, -1}), 1);  // indices of any shape
  CHECK(t1.shape() == Shape{3, 2, 2});
  CHECK(V(index(t1, 1)) == std::vector<double>{4, 7, 7, 7});
  CHECK(take(vec({5, 6}), Array(int32_t{1})).item<float>() == 6.f);  // scalar index drops the axis
  CHECK(take(x, iarr({0}, {}), 1).shape() == Shape{3, 0});

  Array ta = take_along_axis(x, iarr({3, 1}, {3, 0, 1}), 1);
  CHECK(ta.shape() == Shape{3, 1});
  CHECK(V(ta) == std::vector<double>{3, 4, 9});
  CHECK(V(take_along_axis(x, iarr({1, 4}, {2, 1, 0, -1}), 0)) == std::vector<double>{8, 5, 2, 11});
  // Indices broadcast against the array outside the axis (and the array against the indices).
  CHECK(V(take_along_axis(x, iarr({1, 2}, {0, 3}), 1)) == std::vector<double>{0, 3, 4, 7, 8, 11});
  CHECK(take_along_axis(vec({7, 8, 9}).reshaped({1, 3}), iarr({2, 1}, {2, 0}), 1).shape() ==
        Shape{2, 1});

  Array oh = one_hot(ivec({0, 2, -1, 3}), 3);
  CHECK(oh.shape() == Shape{4, 3});
  CHECK(oh.dtype() == DType::float32);
  CHECK(V(oh) == std::vector<double>{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0});  // out of range: zeros
  CHECK(one_hot(iarr({2, 1}, {1, 0}), 2, DType::int32).dtype() == DType::int32);
  CHECK(one_hot(iarr({2, 1}, {1, 0}), 2).shape() == Shape{2, 1, 2});
}

TEST_CASE("tril and triu, with offsets and batches") {
  Array x = iota({3, 3}) + 1.f;
  CHECK(V(tril(x)) == std::vector<double>{1, 0, 0, 4, 5, 0, 7, 8, 9});
  CHECK(V(triu(x)) == std::vector<double>{1, 2, 3, 0, 5, 6, 0, 0, 9});
  CHECK(V(tril(x, -1)) == std::vector<double>{0, 0, 0, 4, 0, 0, 7, 8, 0});
  CHECK(V(triu(x, 1)) == std::vector<double>{0, 2, 3, 0, 0, 6, 0, 0, 0});
  CHECK(V(tril(ones({2, 3}), 1)) == std::vector<double>{1, 1, 0, 1, 1, 1});
  CHECK(V(tril(ones({2, 2, 2}))) == std::vector<double>{1, 0, 1, 1, 1, 0, 1, 1});
  CHECK(V(triu(ones({2, 2}), 5)) == std::vector<double>{0, 0, 0, 0});
  CHECK(V(tril(ones({2, 2}, DType::int32), -5)) == std::vector<double>{0, 0, 0, 0});
}

TEST_CASE("stop_gradient keeps the values") {
  Array x = vec({1, 2});
  CHECK(stop_gradient(x).shares_buffer_with(x));
}

// ---- errors name the op, the shapes and the problem --------------------------------------------

TEST_CASE("error messages") {
  using E = std::invalid_argument;
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}), zeros({4, 5})),
                       "matmul: contracting dims differ: (2,3) @ (4,5)", E);
  CHECK_THROWS_WITH_AS(matmul(zeros({3}), zeros({4, 5})),
                       "matmul: contracting dims differ: (3,) @ (4,5)", E);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 2, 3}), zeros({3, 3, 4})),
                       "matmul: shapes (2,) and (3,) cannot be broadcast together", E);
  CHECK_THROWS_WITH_AS(matmul(Array(1.f), zeros({2})),
                       "matmul: operands must have rank >= 1, got () @ (2,)", E);
  CHECK_THROWS_WITH_AS(matmul(ivec({1}), zeros({1})),
                       "matmul: float32 operands required, got int32 (1,) @ float32 (1,)", E);
  CHECK_THROWS_WITH_AS(zeros({2, 3}) + zeros({4}),
                       "add: shapes (2,3) and (4,) cannot be broadcast together", E);
  CHECK_THROWS_WITH_AS(multiply(zeros({2}), zeros({3})),
                       "multiply: shapes (2,) and (3,) cannot be broadcast together", E);
  CHECK_THROWS_WITH_AS(where(Array(true), zeros({2}), zeros({3})),
                       "where: shapes (2,) and (3,) cannot be broadcast together", E);
  CHECK_THROWS_WITH_AS(broadcast_to(zeros({3}), {4}),
                       "broadcast_to: shapes (3,) and (4,) cannot be broadcast together", E);
  CHECK_THROWS_WITH_AS(broadcast_to(zeros({3}), {3, 1}),
                       "broadcast_to: cannot broadcast shape (3,) to (3,1)", E);
  CHECK_THROWS_WITH_AS(reshape(zeros({2, 3}), {4}),
                       "reshape: cannot reshape array of shape (2,3) (size 6) into shape (4,)", E);
  CHECK_THROWS_WITH_AS(reshape(zeros({2, 3}), {4, -1}),
                       "reshape: cannot reshape array of shape (2,3) into shape (4,-1)", E);
  CHECK_THROWS_WITH_AS(reshape(zeros({6}), {-1, -1}),
                       "reshape: can only specify one unknown dimension in (-1,-1)", E);
  CHECK_THROWS_WITH_AS(sum(zeros({2, 3}), {2}),
                       "sum: axis 2 is out of bounds for an array of rank 2", E);
  CHECK_THROWS_WITH_AS(sum(zeros({2, 3}), {0, -2}), "sum: duplicate axis -2", E);
  CHECK_THROWS_WITH_AS(max(zeros({0})), "max: zero-size reduction over shape (0,)", E);
  CHECK_THROWS_WITH_AS(argmax(zeros({2}), 1),
                       "argmax: axis 1 is out of bounds for an array of rank 1", E);
  CHECK_THROWS_WITH_AS(log_softmax(zeros({2}), 1),
                       "log_softmax: axis 1 is out of bounds for an array of rank 1", E);
  CHECK_THROWS_WITH_AS(softmax(zeros({2}), -2),
                       "softmax: axis -2 is out of bounds for an array of rank 1", E);
  CHECK_THROWS_WITH_AS(transpose(zeros({2, 3}), {0}),
                       "transpose: permutation of length 1 for an array of shape (2,3)", E);
  CHECK_THROWS_WITH_AS(transpose(zeros({2, 3}), {0, 0}), "transpose: repeated axis in permutation",
                       E);
  CHECK_THROWS_WITH_AS(swapaxes(zeros({2, 3}), 0, 2),
                       "swapaxes: axis 2 is out of bounds for an array of rank 2", E);
  CHECK_THROWS_WITH_AS(expand_dims(zeros({2}), 3),
                       "expand_dims: axis 3 is out of bounds for an array of rank 2", E);
  CHECK_THROWS_WITH_AS(squeeze(zeros({2, 1}), {0}),
                       "squeeze: cannot select axis 0 of shape (2,1): its size is not 1", E);
  CHECK_THROWS_WITH_AS(concatenate({}), "concatenate: need at least one array to concatenate", E);
  CHECK_THROWS_WITH_AS(concatenate({Array(1.f), Array(2.f)}),
                       "concatenate: zero-dimensional arrays cannot be concatenated", E);
  CHECK_THROWS_WITH_AS(concatenate({zeros({2, 3}), zeros({2, 4})}),
                       "concatenate: shapes (2,3) and (2,4) differ outside axis 0", E);
  CHECK_THROWS_WITH_AS(concatenate({zeros({2, 3}), zeros({3})}),
                       "concatenate: shapes (2,3) and (3,) differ outside axis 0", E);
  CHECK_THROWS_WITH_AS(
      split(zeros({5, 2}), 2),
      "split: array of shape (5,2) cannot be split into 2 equal sections along axis 0", E);
  CHECK_THROWS_WITH_AS(split(zeros({4}), 0), "split: number of sections must be positive, got 0",
                       E);
  CHECK_THROWS_WITH_AS(stack({zeros({2}), zeros({3})}),
                       "stack: all input arrays must have the same shape, got (2,) and (3,)", E);
  CHECK_THROWS_WITH_AS(stack({}), "stack: need at least one array to stack", E);
  CHECK_THROWS_WITH_AS(slice(zeros({3}), 0, 0, 3, 0), "slice: step must be positive, got 0", E);
  CHECK_THROWS_WITH_AS(slice(zeros({3}), 1, 0, 3),
                       "slice: axis 1 is out of bounds for an array of rank 1", E);
  CHECK_THROWS_WITH_AS(
      slice(zeros({3}), {{0}, {0}}),
      "slice: too many indices for array: array is 1-dimensional, but 2 were indexed", E);
  CHECK_THROWS_WITH_AS(index(zeros({3, 2}), 3),
                       "index: index 3 is out of bounds for axis 0 with size 3", E);
  CHECK_THROWS_WITH_AS(index(zeros({3}), -4),
                       "index: index -4 is out of bounds for axis 0 with size 3", E);
  CHECK_THROWS_WITH_AS(
      index(Array(1.f), 0),
      "index: too many indices for array: array is 0-dimensional, but 1 were indexed", E);
  CHECK_THROWS_WITH_AS(take(zeros({5}), ivec({1, 5})),
                       "take: index 5 is out of bounds for axis 0 with size 5", E);
  CHECK_THROWS_WITH_AS(take(zeros({2, 5}), ivec({-6}), 1),
                       "take: index -6 is out of bounds for axis 1 with size 5", E);
  CHECK_THROWS_WITH_AS(take(zeros({5}), vec({1})), "take: indices must be int32, got float32", E);
  CHECK_THROWS_WITH_AS(take_along_axis(zeros({2, 3}), iarr({2, 1}, {0, 3}), 1),
                       "take_along_axis: index 3 is out of bounds for axis 1 with size 3", E);
  CHECK_THROWS_WITH_AS(
      take_along_axis(zeros({2, 3}), ivec({0}), 1),
      "take_along_axis: indices must have the same rank as the array, got shapes (2,3) and (1,)",
      E);
  CHECK_THROWS_WITH_AS(take_along_axis(zeros({2, 3}), iarr({4, 1}, {0, 0, 0, 0}), 1),
                       "take_along_axis: array shape (2,3) and indices shape (4,1) cannot be "
                       "broadcast together outside axis 1",
                       E);
  CHECK_THROWS_WITH_AS(one_hot(ivec({0}), -1), "one_hot: num_classes must be >= 0, got -1", E);
  CHECK_THROWS_WITH_AS(tril(zeros({3})), "tril: array must be at least 2-D, got shape (3,)", E);
  CHECK_THROWS_WITH_AS(triu(Array(1.f)), "triu: array must be at least 2-D, got shape ()", E);
  CHECK_THROWS_WITH_AS(arange(0, 1, 1, DType::bool_),
                       "arange: dtype must be float32 or int32, got bool", E);
  CHECK_THROWS_WITH_AS(dot(zeros({2, 2, 2}), zeros({2})),
                       "dot: only rank <= 2 operands are supported, got (2,2,2) and (2,)", E);
  CHECK_THROWS_WITH_AS(vdot(zeros({2}), zeros({3})), "vdot: sizes differ: (2,) and (3,)", E);
}
