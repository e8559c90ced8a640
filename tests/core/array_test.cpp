// flaxpp::Array: construction, shared immutable storage, item(), the xtensor bridge, and
// printing exactly as JAX prints (expected strings are what numpy 1.24 / jax.Array.__repr__
// print for the same values).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include <doctest/doctest.h>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xmath.hpp>

#include "core/ops.hpp"
#include "core/xtensor.hpp"

using namespace flaxpp;

namespace {
std::string show(const Array& a) {
  std::ostringstream os;
  os << a;
  return os.str();
}
Array vec(std::vector<float> v) { return Array::from({static_cast<int64_t>(v.size())}, v); }
}  // namespace

TEST_CASE("construction from values, scalars and bools") {
  Array x = Array::from({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  CHECK(x.shape() == Shape{2, 3});
  CHECK(x.ndim() == 2);
  CHECK(x.size() == 6);
  CHECK(x.dtype() == DType::float32);
  CHECK(x.nbytes() == 24);
  CHECK(x.data<float>()[4] == 5.f);

  Array i = Array::from({3}, std::vector<int32_t>{0, -1, 2});
  CHECK(i.dtype() == DType::int32);
  CHECK(i.data<int32_t>()[1] == -1);
  Array u = Array::from({1}, std::vector<uint32_t>{7u});
  CHECK(u.dtype() == DType::uint32);

  Array s = 2.5f;
  CHECK(s.ndim() == 0);
  CHECK(s.size() == 1);
  CHECK(Array().item<float>() == 0.f);  // default: float32 scalar 0, like jnp.float32(0)
  CHECK(Array(int32_t{7}).dtype() == DType::int32);

  Array b = Array::from_bool({3}, {true, false, true});
  CHECK(b.dtype() == DType::bool_);
  CHECK(b.nbytes() == 3);
  CHECK(b.data<uint8_t>()[2] == 1);
  CHECK(Array(true).item<bool>());

  CHECK(Array::vector({1, 2}).shape() == Shape{2});
  CHECK(Array::matrix({{1, 2}, {3, 4}, {5, 6}}).shape() == Shape{3, 2});
  float raw[4] = {1, 2, 3, 4};
  CHECK(Array::from_bytes({2, 2}, DType::float32, raw).to_float() ==
        std::vector<float>{1, 2, 3, 4});
  CHECK(Array::empty({0, 3}, DType::float32).size() == 0);
}

TEST_CASE("construction errors name the problem") {
  CHECK_THROWS_WITH_AS(Array::from({2, 2}, std::vector<float>{1, 2, 3}),
                       "Array::from: 3 values do not fill shape (2,2)", std::invalid_argument);
  CHECK_THROWS_WITH_AS(Array::matrix({{1, 2}, {3}}), "Array::matrix: ragged rows",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(Array::empty({2, -1}, DType::float32),
                       "Array::empty: negative dimension -1 in shape (2,-1)",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(Array::vector({1}).data<int32_t>(),
                       "Array::data: array has dtype float32, not int32", std::invalid_argument);
}

TEST_CASE("copies are O(1) and share the immutable buffer; reshape shares it too") {
  Array x = Array::matrix({{1, 2, 3}, {4, 5, 6}});
  Array y = x;
  CHECK(y.shares_buffer_with(x));
  CHECK(y.raw() == x.raw());
  Array r = jnp::reshape(x, {3, 2});
  CHECK(r.shares_buffer_with(x));
  CHECK(r.shape() == Shape{3, 2});
  CHECK(x.reshaped({6}).shares_buffer_with(x));
  CHECK(x.detached().shares_buffer_with(x));
  CHECK(jnp::expand_dims(x, 0).shares_buffer_with(x));
  Array c = x.copy();
  CHECK(!c.shares_buffer_with(x));
  CHECK(c.to_float() == x.to_float());
  // Buffers are 64-byte aligned (SIMD loads, BLAS), whatever their size.
  for (int64_t n : {0, 1, 3, 17, 1000, 100000})
    CHECK(reinterpret_cast<uintptr_t>(Array::empty({n}, DType::float32).raw()) % 64 == 0);
  // Default-constructed arrays (placeholders) share one read-only zero and allocate nothing.
  Array d1, d2;
  CHECK(d1.shares_buffer_with(d2));
  CHECK(d1.item<float>() == 0.f);
  CHECK_THROWS_AS(d1.mutable_data<float>(), std::logic_error);
}

TEST_CASE("item() converts the single element; other sizes are an error") {
  CHECK(Array(3.75f).item<float>() == 3.75f);
  CHECK(Array(3.75f).item<int32_t>() == 3);
  CHECK(Array(int32_t{-4}).item<double>() == -4.0);
  CHECK(Array::vector({9}).item<float>() == 9.f);  // any size-1 array
  CHECK(Array(false).item<bool>() == false);
  CHECK_THROWS_WITH_AS(Array::vector({1, 2}).item<float>(),
                       "Array::item: array of shape (2,) has 2 elements, not 1",
                       std::invalid_argument);
  CHECK(Array::from({2}, std::vector<int32_t>{1, -2}).to_double() == std::vector<double>{1, -2});
}

TEST_CASE("xtensor bridge: view without copying, from_xtensor with a copy") {
  Array x = Array::matrix({{1, 2, 3}, {4, 5, 6}});
  auto v = view<float>(x);
  CHECK(v.dimension() == 2);
  CHECK(v.shape()[0] == 2);
  CHECK(v.shape()[1] == 3);
  CHECK(v(1, 0) == 4.f);
  CHECK(v.data() == x.data<float>());  // no copy
  CHECK(xt::sum(v)() == 21.f);

  Array t = from_xtensor(xt::transpose(v) * 2.f);  // evaluated, row-major
  CHECK(t.shape() == Shape{3, 2});
  CHECK(t.to_float() == std::vector<float>{2, 8, 4, 10, 6, 12});
  CHECK(!t.shares_buffer_with(x));

  // Round trips for each dtype.
  Array i = Array::from({2, 2}, std::vector<int32_t>{1, -2, 3, 4});
  Array i2 = from_xtensor(view<int32_t>(i));
  CHECK(i2.dtype() == DType::int32);
  CHECK(i2.shape() == i.shape());
  CHECK(i2.to_double() == i.to_double());
  Array b = from_xtensor(view<float>(x) > 2.5f);
  CHECK(b.dtype() == DType::bool_);
  CHECK(b.to_double() == std::vector<double>{0, 0, 1, 1, 1, 1});
  CHECK(view<bool>(b)(1, 2));
  Array s = from_xtensor(xt::xarray<float>(1.5f));
  CHECK(s.ndim() == 0);
  CHECK(s.item<float>() == 1.5f);
  CHECK_THROWS_AS(view<int32_t>(x), std::invalid_argument);
}

TEST_CASE("printing: floats like JAX") {
  CHECK(show(vec({1, 2, 3})) == "Array([1., 2., 3.], dtype=float32)");
  CHECK(show(Array::matrix({{1, 2, 3}, {4, 5, 6}})) ==
        "Array([[1., 2., 3.],\n"
        "       [4., 5., 6.]], dtype=float32)");
  CHECK(show(vec({1, 2.5f})) == "Array([1. , 2.5], dtype=float32)");
  CHECK(show(vec({0.1f, 0.3f, 0.123456789f})) ==
        "Array([0.1       , 0.3       , 0.12345679], dtype=float32)");
  CHECK(show(vec({3.14159265f})) == "Array([3.1415927], dtype=float32)");
  CHECK(show(vec({1000, 1})) == "Array([1000.,    1.], dtype=float32)");
  CHECK(show(vec({0.f, -0.f})) == "Array([ 0., -0.], dtype=float32)");
  CHECK(show(Array(1.f)) == "Array(1., dtype=float32)");
  CHECK(show(Array(-0.5f)) == "Array(-0.5, dtype=float32)");
  // Scientific notation when the range is wide or values tiny/huge; common mantissa width.
  CHECK(show(vec({1e-5f, 1})) == "Array([1.e-05, 1.e+00], dtype=float32)");
  CHECK(show(vec({1.5e-5f, 1, -2})) == "Array([ 1.5e-05,  1.0e+00, -2.0e+00], dtype=float32)");
  CHECK(show(vec({1001, 1})) == "Array([1.001e+03, 1.000e+00], dtype=float32)");
  CHECK(show(vec({1e20f})) == "Array([1.e+20], dtype=float32)");
  // nan and inf.
  CHECK(show(vec({1, NAN})) == "Array([ 1., nan], dtype=float32)");
  CHECK(show(vec({-INFINITY, 1.5f, NAN})) == "Array([-inf,  1.5,  nan], dtype=float32)");
}

TEST_CASE("printing: ints, bools, 3-D, empty") {
  CHECK(show(Array::from({3}, std::vector<int32_t>{1, -2, 10})) ==
        "Array([ 1, -2, 10], dtype=int32)");
  CHECK(show(Array::from({3}, std::vector<int32_t>{1, 10, 100})) ==
        "Array([  1,  10, 100], dtype=int32)");
  CHECK(show(Array(int32_t{3})) == "Array(3, dtype=int32)");
  CHECK(show(Array::from_bool({2}, {true, false})) == "Array([ True, False], dtype=bool)");
  CHECK(show(Array::from_bool({2}, {true, true})) == "Array([ True,  True], dtype=bool)");
  CHECK(show(Array::from_bool({2, 2}, {true, false, false, true})) ==
        "Array([[ True, False],\n"
        "       [False,  True]], dtype=bool)");
  CHECK(show(Array(true)) == "Array(True, dtype=bool)");
  CHECK(show(jnp::reshape(jnp::arange(0, 8, 1), {2, 2, 2})) ==
        "Array([[[0., 1.],\n"
        "        [2., 3.]],\n"
        "\n"
        "       [[4., 5.],\n"
        "        [6., 7.]]], dtype=float32)");
  CHECK(show(jnp::zeros({0})) == "Array([], shape=(0,), dtype=float32)");
  CHECK(show(jnp::zeros({2, 0})) == "Array([], shape=(2, 0), dtype=float32)");
}

TEST_CASE("printing: long rows wrap at 75 columns, large arrays are summarised") {
  CHECK(show(jnp::arange(0, 20, 1)) ==
        "Array([ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10., 11., 12.,\n"
        "       13., 14., 15., 16., 17., 18., 19.], dtype=float32)");
  CHECK(show(jnp::arange(0, 12, 1) / 3.f) ==
        "Array([0.        , 0.33333334, 0.6666667 , 1.        , 1.3333334 ,\n"
        "       1.6666666 , 2.        , 2.3333333 , 2.6666667 , 3.        ,\n"
        "       3.3333333 , 3.6666667 ], dtype=float32)");
  CHECK(show(jnp::arange(1001)) == "Array([   0,    1,    2, ...,  998,  999, 1000], dtype=int32)");
  CHECK(show(jnp::arange(0, 2000, 1)) ==
        "Array([0.000e+00, 1.000e+00, 2.000e+00, ..., 1.997e+03, 1.998e+03,\n"
        "       1.999e+03], dtype=float32)");
}

namespace {
size_t resident_bytes() {  // this process's resident set, from /proc/self/statm
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  REQUIRE(statm);
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}
}  // namespace

TEST_CASE("a cache miss gives back pages of 4-16 MiB cached blocks instead of growing") {
  if (!buffer_cache_enabled()) return;  // off under AddressSanitizer (or FLAXPP_BUFFER_CACHE_MB=0)
  release_buffer_cache();
  const int64_t mid_n = int64_t{3} << 20;  // 12 MiB of float32
  std::vector<const void*> mid_raw;
  {
    std::vector<Array> mid;  // every page touched
    for (int i = 0; i < 4; ++i) mid.push_back(jnp::ones({mid_n}));
    for (const Array& a : mid) mid_raw.push_back(a.raw());
  }  // cached, all 48 MiB still in memory
  const size_t before = resident_bytes();
  {
    std::vector<Array> small;  // 8 x 4 MiB: each a miss (a 12 MiB block is too large to serve it)
    for (int i = 0; i < 8; ++i) small.push_back(jnp::ones({int64_t{1} << 20}));
    const size_t after = resident_bytes();
    // 32 MiB came in; the cache held 48 MiB in memory and keeps at most 16, so it gave 32 back.
    // Without that the process grows by 32 MiB.
    CHECK(after < before + (size_t{8} << 20));
    CHECK(after > before - (size_t{8} << 20));
  }
  Array again = jnp::full({mid_n}, 2.f);  // a trimmed block serves its own size again...
  CHECK(std::find(mid_raw.begin(), mid_raw.end(), again.raw()) != mid_raw.end());
  const float* p = again.data<float>();
  // ...and its fresh pages are written
  for (int64_t i : {int64_t{0}, mid_n / 2, mid_n - 1}) CHECK(p[i] == 2.f);
  release_buffer_cache();
}

TEST_CASE("str() is NumPy's array_str") {
  CHECK(vec({1, 2, 3}).str() == "[1. 2. 3.]");
  CHECK(Array::matrix({{1, 2}, {3, 4}}).str() == "[[1. 2.]\n [3. 4.]]");
  CHECK(Array::from_bool({2}, {true, false}).str() == "[ True False]");
  CHECK(Array(1.f).str() == "1.0");
  CHECK(Array(int32_t{5}).str() == "5");
}

TEST_CASE("freed buffers of 8 KiB and more are reused, and release_buffer_cache hands them back") {
  if (!buffer_cache_enabled()) {  // off under AddressSanitizer (or FLAXPP_BUFFER_CACHE_MB=0)
    CHECK(release_buffer_cache() == 0);
    return;
  }
  release_buffer_cache();
  const void* first = nullptr;
  {
    Array a = jnp::zeros({1 << 18});  // 1 MiB: mapped directly, cached when freed
    first = a.raw();
  }
  {
    Array b = jnp::ones({1 << 18});  // the same size class comes back from the cache
    CHECK(b.raw() == first);
    CHECK(b.to_float()[12345] == 1.f);  // and is fully written by its op
    Array c =
        jnp::ones({(1 << 18) + 100});  // within a quarter: a fresh block (b holds the cached one)
    CHECK(c.raw() != first);
  }
  size_t released = release_buffer_cache();
  CHECK(released >= (size_t{2} << 20));
  CHECK(release_buffer_cache() == 0);
  {
    Array small = jnp::zeros({100});  // below 8 KiB: plain malloc, never cached
    CHECK(small.size() == 100);
  }
  CHECK(release_buffer_cache() == 0);
}
