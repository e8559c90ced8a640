// Elementwise primitives: each forward kernel with its vjp rule right below it.
#include <cmath>
#include <numbers>

#include "core/autodiff.hpp"
#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/parallel.hpp"
#include "core/simd/kernels.hpp"

namespace flaxpp {

using autodiff::needs_grad;
using autodiff::record;
using autodiff::unbroadcast;
using Need = std::vector<bool>;
using Grads = std::vector<Array>;

namespace {

// ---- kernels --------------------------------------------------------------------------------

DType promote(DType a, DType b) {
  if (a == DType::float32 || b == DType::float32) return DType::float32;
  if (a == b) return a == DType::bool_ ? DType::int32 : a;
  if (a == DType::bool_) return b;
  if (b == DType::bool_) return a;
  return DType::int32;
}

template <class To>
Array convert(const Array& a) {
  if (a.dtype() == dtype_of<To>::value) return a;
  Array out = Array::empty(a.shape(), dtype_of<To>::value);
  To* o = out.mutable_data<To>();
  const int64_t n = a.size();
  auto run = [&](const auto* p) {
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<To>(p[i]);
  };
  switch (a.dtype()) {
    case DType::float32: run(a.data<float>()); break;
    case DType::int32: run(a.data<int32_t>()); break;
    case DType::uint32: run(a.data<uint32_t>()); break;
    case DType::bool_: run(a.data<uint8_t>()); break;
  }
  return out;
}

Array convert_to(const Array& a, DType d) {
  switch (d) {
    case DType::float32: return convert<float>(a);
    case DType::int32: return convert<int32_t>(a);
    case DType::uint32: return convert<uint32_t>(a);
    case DType::bool_: {
      Array out = Array::empty(a.shape(), DType::bool_);
      auto v = a.to_double();
      uint8_t* o = out.mutable_data<uint8_t>();
      for (size_t i = 0; i < v.size(); ++i) o[i] = v[i] != 0;
      return out;
    }
  }
  return a;
}

// Elementwise loops run on the thread pool in chunks of at least this many elements.
constexpr int64_t kGrain = 1 << 14;

// out[i] = op(a[i], b[i]) with broadcasting; T = input element type, R = output element type.
template <class T, class R, class Op>
Array binary_kernel(const Array& a, const Array& b, const char* name, Op op) {
  Shape shape = a.shape() == b.shape() ? a.shape() : broadcast_shapes(a.shape(), b.shape(), name);
  Array out = Array::empty(shape, dtype_of<R>::value);
  R* o = out.mutable_data<R>();
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  int64_t n = out.size();
  if (a.size() == n && b.size() == n) {
    parallel_for(n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) o[i] = op(pa[i], pb[i]);
    });
  } else if (a.size() == n && b.size() == 1) {
    T s = pb[0];
    parallel_for(n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) o[i] = op(pa[i], s);
    });
  } else if (b.size() == n && a.size() == 1) {
    T s = pa[0];
    parallel_for(n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) o[i] = op(s, pb[i]);
    });
  } else if (n > 0) {
    Shape sa = kernels::broadcast_strides(a.shape(), shape);
    Shape sb = kernels::broadcast_strides(b.shape(), shape);
    int64_t inner = shape.empty() ? 1 : std::max<int64_t>(1, shape.back());
    int64_t runs = n / inner;
    parallel_for(runs, std::max<int64_t>(1, kGrain / inner), [&](int64_t lo, int64_t hi) {
      kernels::for_each_broadcast_runs(
          shape, sa, sb, lo, hi, [&](int64_t oi, int64_t ao, int64_t bo, int64_t m, int64_t as, int64_t bs) {
            if (as == 1 && bs == 1)
              for (int64_t i = 0; i < m; ++i) o[oi + i] = op(pa[ao + i], pb[bo + i]);
            else if (as == 1 && bs == 0)
              for (int64_t i = 0; i < m; ++i) o[oi + i] = op(pa[ao + i], pb[bo]);
            else
              for (int64_t i = 0; i < m; ++i) o[oi + i] = op(pa[ao + i * as], pb[bo + i * bs]);
          });
    });
  }
  return out;
}

// Arithmetic on the promoted dtype; `fop` for float32, `iop` for integer types.
template <class FOp, class IOp>
Array arith(const Array& a, const Array& b, const char* name, FOp fop, IOp iop) {
  DType d = promote(a.dtype(), b.dtype());
  if (d == DType::float32) return binary_kernel<float, float>(convert<float>(a), convert<float>(b), name, fop);
  if (d == DType::uint32)
    return binary_kernel<uint32_t, uint32_t>(convert<uint32_t>(a), convert<uint32_t>(b), name, iop);
  return binary_kernel<int32_t, int32_t>(convert<int32_t>(a), convert<int32_t>(b), name, iop);
}

template <class Op>
Array compare(const Array& a, const Array& b, const char* name, Op op) {
  DType d = promote(a.dtype(), b.dtype());
  if (a.dtype() == DType::bool_ && b.dtype() == DType::bool_) d = DType::int32;
  if (d == DType::float32) return binary_kernel<float, uint8_t>(convert<float>(a), convert<float>(b), name, op);
  if (d == DType::uint32)
    return binary_kernel<uint32_t, uint8_t>(convert<uint32_t>(a), convert<uint32_t>(b), name, op);
  return binary_kernel<int32_t, uint8_t>(convert<int32_t>(a), convert<int32_t>(b), name, op);
}

template <class Op>
Array unary_float(const Array& a0, Op op) {
  Array a = convert<float>(a0);
  Array out = Array::empty(a.shape(), DType::float32);
  const float* p = a.data<float>();
  float* o = out.mutable_data<float>();
  parallel_for(a.size(), kGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) o[i] = op(p[i]);
  });
  return out;
}

// A transcendental function: one of simd::Kernels' maps (xsimd's algorithms, a few ulp), the
// same bits on every instruction set.
Array unary_simd(const Array& a0, void (*kernel)(const float*, float*, int64_t)) {
  Array a = convert<float>(a0);
  Array out = Array::empty(a.shape(), DType::float32);
  const float* p = a.data<float>();
  float* o = out.mutable_data<float>();
  parallel_for(a.size(), kGrain, [&](int64_t lo, int64_t hi) { kernel(p + lo, o + lo, hi - lo); });
  return out;
}

Grads two(const Need& need, auto first, auto second) {
  return {need[0] ? first() : Array(), need[1] ? second() : Array()};
}

}  // namespace

// ---- arithmetic ---------------------------------------------------------------------------

Array jnp::add(const Array& a, const Array& b) {
  Array out = arith(a, b, "add", [](float x, float y) { return x + y; }, [](auto x, auto y) { return x + y; });
  if (!needs_grad(a, b)) return out;
  return record("add", out, {&a, &b}, [sa = a.shape(), sb = b.shape()](const Array& g, const Array&, const Need& n) {
    return two(n, [&] { return unbroadcast(g, sa); }, [&] { return unbroadcast(g, sb); });
  });
}

Array jnp::subtract(const Array& a, const Array& b) {
  Array out = arith(a, b, "subtract", [](float x, float y) { return x - y; }, [](auto x, auto y) { return x - y; });
  if (!needs_grad(a, b)) return out;
  return record("subtract", out, {&a, &b}, [sa = a.shape(), sb = b.shape()](const Array& g, const Array&, const Need& n) {
    return two(n, [&] { return unbroadcast(g, sa); }, [&] { return unbroadcast(-g, sb); });
  });
}

Array jnp::multiply(const Array& a, const Array& b) {
  Array out = arith(a, b, "multiply", [](float x, float y) { return x * y; }, [](auto x, auto y) { return x * y; });
  if (!needs_grad(a, b)) return out;
  return record("multiply", out, {&a, &b}, [a, b](const Array& g, const Array&, const Need& n) {
    return two(n, [&] { return unbroadcast(g * b, a.shape()); }, [&] { return unbroadcast(g * a, b.shape()); });
  });
}

// True division, as jnp.divide: integer operands give float32.
Array jnp::divide(const Array& a, const Array& b) {
  Array out = binary_kernel<float, float>(convert<float>(a), convert<float>(b), "divide",
                                          [](float x, float y) { return x / y; });
  if (!needs_grad(a, b)) return out;
  return record("divide", out, {&a, &b}, [a, b](const Array& g, const Array&, const Need& n) {
    return two(n, [&] { return unbroadcast(g / b, a.shape()); },
               [&] { return unbroadcast(-(g * a) / (b * b), b.shape()); });
  });
}

Array jnp::negative(const Array& a) {
  Array out;
  if (a.is_float())
    out = unary_float(a, [](float x) { return -x; });
  else
    out = arith(Array(0), a, "negative", [](float x, float y) { return x - y; }, [](auto x, auto y) { return x - y; });
  if (!needs_grad(a)) return out;
  return record("negative", out, {&a}, [](const Array& g, const Array&, const Need&) { return Grads{-g}; });
}

Array operator+(const Array& a, const Array& b) { return jnp::add(a, b); }
Array operator-(const Array& a, const Array& b) { return jnp::subtract(a, b); }
Array operator*(const Array& a, const Array& b) { return jnp::multiply(a, b); }
Array operator/(const Array& a, const Array& b) { return jnp::divide(a, b); }
Array operator-(const Array& a) { return jnp::negative(a); }

// x ** y. d/dx = y x^(y-1); d/dy = x^y log x, taken as 0 where x == 0 (as JAX).
Array jnp::power(const Array& a, const Array& b) {
  Array out = binary_kernel<float, float>(convert<float>(a), convert<float>(b), "power",
                                          [](float x, float y) { return std::pow(x, y); });
  if (!needs_grad(a, b)) return out;
  return record("power", out, {&a, &b}, [a, b](const Array& g, const Array& out, const Need& n) {
    return two(n, [&] { return unbroadcast(g * b * jnp::power(a, b - 1.f), a.shape()); },
               [&] {
                 Array safe_log = jnp::where(jnp::equal(a, 0.f), Array(0.f), jnp::log(jnp::where(jnp::equal(a, 0.f), Array(1.f), a)));
                 return unbroadcast(g * out * safe_log, b.shape());
               });
  }, /*keep_output=*/true);
}

// ---- unary float functions -------------------------------------------------------------------

Array jnp::exp(const Array& a) {
  Array out = unary_simd(a, simd::kernels().exp);
  if (!needs_grad(a)) return out;
  return record("exp", out, {&a}, [](const Array& g, const Array& out, const Need&) { return Grads{g * out}; }, true);
}

Array jnp::log(const Array& a) {
  Array out = unary_simd(a, simd::kernels().log);
  if (!needs_grad(a)) return out;
  return record("log", out, {&a}, [a](const Array& g, const Array&, const Need&) { return Grads{g / a}; });
}

Array jnp::log1p(const Array& a) {
  Array out = unary_simd(a, simd::kernels().log1p);
  if (!needs_grad(a)) return out;
  return record("log1p", out, {&a}, [a](const Array& g, const Array&, const Need&) { return Grads{g / (a + 1.f)}; });
}

Array jnp::expm1(const Array& a) {
  Array out = unary_simd(a, simd::kernels().expm1);
  if (!needs_grad(a)) return out;
  return record("expm1", out, {&a}, [](const Array& g, const Array& out, const Need&) { return Grads{g * (out + 1.f)}; }, true);
}

Array jnp::tanh(const Array& a) {
  Array out = unary_simd(a, simd::kernels().tanh);
  if (!needs_grad(a)) return out;
  return record("tanh", out, {&a}, [](const Array& g, const Array& out, const Need&) { return Grads{g * (1.f - out * out)}; }, true);
}

Array jnp::sqrt(const Array& a) {
  Array out = unary_float(a, [](float x) { return std::sqrt(x); });
  if (!needs_grad(a)) return out;
  return record("sqrt", out, {&a}, [](const Array& g, const Array& out, const Need&) { return Grads{g * 0.5f / out}; }, true);
}

Array jnp::rsqrt(const Array& a) {
  Array out = unary_float(a, [](float x) { return 1.f / std::sqrt(x); });
  if (!needs_grad(a)) return out;
  // d/dx x^-1/2 = -1/2 x^-3/2 = -1/2 out / x
  return record("rsqrt", out, {&a}, [a](const Array& g, const Array& out, const Need&) { return Grads{g * -0.5f * out / a}; }, true);
}

Array jnp::erf(const Array& a) {
  Array out = unary_float(a, [](float x) { return std::erf(x); });
  if (!needs_grad(a)) return out;
  return record("erf", out, {&a}, [a](const Array& g, const Array&, const Need&) {
    return Grads{g * static_cast<float>(2.0 / std::sqrt(std::numbers::pi)) * jnp::exp(-(a * a))};
  });
}

// |x|; d/dx = sign(x), 0 at 0 (JAX's rule).
Array jnp::abs(const Array& a) {
  if (!a.is_float()) return jnp::where(jnp::less(a, Array(0)), jnp::negative(a), a);
  Array out = unary_float(a, [](float x) { return std::fabs(x); });
  if (!needs_grad(a)) return out;
  return record("abs", out, {&a}, [a](const Array& g, const Array&, const Need&) { return Grads{g * jnp::sign(a)}; });
}

// sign has zero derivative everywhere (JAX): no node is recorded.
Array jnp::sign(const Array& a) {
  if (!a.is_float()) return convert_to(jnp::subtract(convert<int32_t>(jnp::greater(a, Array(0))), convert<int32_t>(jnp::less(a, Array(0)))), a.dtype());
  return unary_float(a, [](float x) { return x > 0 ? 1.f : x < 0 ? -1.f : x; });
}

Array jnp::square(const Array& a) { return a * a; }

// ---- maximum / minimum / where ---------------------------------------------------------------

// On ties the gradient is split evenly between the operands (as jax.numpy.maximum).
static Array choose(const Array& a, const Array& b, bool take_max) {
  const char* name = take_max ? "maximum" : "minimum";
  Array out = take_max ? arith(a, b, name, [](float x, float y) { return std::isnan(x) || x > y ? x : y; },
                               [](auto x, auto y) { return x > y ? x : y; })
                       : arith(a, b, name, [](float x, float y) { return std::isnan(x) || x < y ? x : y; },
                               [](auto x, auto y) { return x < y ? x : y; });
  if (!needs_grad(a, b)) return out;
  return record(name, out, {&a, &b}, [a, b, take_max](const Array& g, const Array&, const Need& n) {
    Array wins = convert<float>(take_max ? jnp::greater(a, b) : jnp::less(a, b));
    Array ties = convert<float>(jnp::equal(a, b)) * 0.5f;
    Array wa = wins + ties;
    return two(n, [&] { return unbroadcast(g * wa, a.shape()); },
               [&] { return unbroadcast(g * (1.f - wa), b.shape()); });
  });
}

Array jnp::maximum(const Array& a, const Array& b) { return choose(a, b, true); }
Array jnp::minimum(const Array& a, const Array& b) { return choose(a, b, false); }

Array jnp::clip(const Array& a, float lo, float hi) { return jnp::minimum(jnp::maximum(a, Array(lo)), Array(hi)); }

Array jnp::where(const Array& cond0, const Array& a0, const Array& b0) {
  Array cond = cond0.dtype() == DType::bool_ ? cond0 : convert_to(cond0, DType::bool_);
  DType d = promote(a0.dtype(), b0.dtype());
  if (a0.dtype() == DType::bool_ && b0.dtype() == DType::bool_) d = DType::bool_;
  Array a = convert_to(a0, d), b = convert_to(b0, d);
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Array out = Array::empty(shape, d);
  size_t isz = itemsize(d);
  Shape sc = kernels::broadcast_strides(cond.shape(), shape);
  Shape sa = kernels::broadcast_strides(a.shape(), shape);
  Shape sb = kernels::broadcast_strides(b.shape(), shape);
  const uint8_t* pc = cond.data<uint8_t>();
  const char* pa = static_cast<const char*>(a.raw());
  const char* pb = static_cast<const char*>(b.raw());
  char* po = static_cast<char*>(out.mutable_raw());
  // Walk cond and a together, and b separately (for_each_broadcast pairs two operands).
  std::vector<int64_t> boff(static_cast<size_t>(out.size()));
  kernels::for_each_broadcast(shape, sb, sb, [&](int64_t o, int64_t bo, int64_t, int64_t m, int64_t bs, int64_t) {
    for (int64_t i = 0; i < m; ++i) boff[o + i] = bo + i * bs;
  });
  kernels::for_each_broadcast(shape, sc, sa, [&](int64_t o, int64_t co, int64_t ao, int64_t m, int64_t cs, int64_t as) {
    for (int64_t i = 0; i < m; ++i) {
      const char* src = pc[co + i * cs] ? pa + (ao + i * as) * isz : pb + boff[o + i] * isz;
      std::memcpy(po + (o + i) * isz, src, isz);
    }
  });
  if (!needs_grad(a0, b0)) return out;
  return record("where", out, {&a0, &b0}, [cond, sa0 = a0.shape(), sb0 = b0.shape()](const Array& g, const Array&, const Need& n) {
    Array zero(0.f);
    return two(n, [&] { return unbroadcast(jnp::where(cond, g, zero), sa0); },
               [&] { return unbroadcast(jnp::where(cond, zero, g), sb0); });
  });
}

// ---- comparisons (bool results, no gradient) -------------------------------------------------

Array jnp::equal(const Array& a, const Array& b) { return compare(a, b, "equal", [](auto x, auto y) { return uint8_t(x == y); }); }
Array jnp::not_equal(const Array& a, const Array& b) { return compare(a, b, "not_equal", [](auto x, auto y) { return uint8_t(x != y); }); }
Array jnp::less(const Array& a, const Array& b) { return compare(a, b, "less", [](auto x, auto y) { return uint8_t(x < y); }); }
Array jnp::less_equal(const Array& a, const Array& b) { return compare(a, b, "less_equal", [](auto x, auto y) { return uint8_t(x <= y); }); }
Array jnp::greater(const Array& a, const Array& b) { return compare(a, b, "greater", [](auto x, auto y) { return uint8_t(x > y); }); }
Array jnp::greater_equal(const Array& a, const Array& b) { return compare(a, b, "greater_equal", [](auto x, auto y) { return uint8_t(x >= y); }); }

Array jnp::logical_not(const Array& a) {
  Array b = convert_to(a, DType::bool_);
  Array out = Array::empty(b.shape(), DType::bool_);
  const uint8_t* p = b.data<uint8_t>();
  uint8_t* o = out.mutable_data<uint8_t>();
  for (int64_t i = 0, n = b.size(); i < n; ++i) o[i] = !p[i];
  return out;
}

// ---- dtype conversion and creation -------------------------------------------------------------

Array jnp::astype(const Array& a, DType dtype) {
  Array out = convert_to(a, dtype);
  if (dtype != DType::float32 || !needs_grad(a)) return out.node() ? out.detached() : out;
  return out;  // float32 -> float32 is the identity: `out` is `a`, node included
}

Array jnp::zeros(const Shape& shape, DType dtype) {
  Array out = Array::empty(shape, dtype, "zeros");
  char* p = static_cast<char*>(out.mutable_raw());
  constexpr int64_t kChunk = int64_t{1} << 18;  // bytes per task: large fills go on the pool
  int64_t chunks = (static_cast<int64_t>(out.nbytes()) + kChunk - 1) / kChunk;
  parallel_for(chunks, 2, [&](int64_t lo, int64_t hi) {
    size_t end = std::min(out.nbytes(), static_cast<size_t>(hi * kChunk));
    std::memset(p + lo * kChunk, 0, end - static_cast<size_t>(lo * kChunk));
  });
  return out;
}

Array jnp::ones(const Shape& shape, DType dtype) {
  Array out = Array::empty(shape, dtype, "ones");
  switch (dtype) {
    case DType::float32: std::fill_n(out.mutable_data<float>(), out.size(), 1.f); break;
    case DType::int32: std::fill_n(out.mutable_data<int32_t>(), out.size(), 1); break;
    case DType::uint32: std::fill_n(out.mutable_data<uint32_t>(), out.size(), 1u); break;
    case DType::bool_: std::fill_n(out.mutable_data<uint8_t>(), out.size(), uint8_t{1}); break;
  }
  return out;
}

Array jnp::full(const Shape& shape, float value) {
  Array out = Array::empty(shape, DType::float32, "full");
  std::fill_n(out.mutable_data<float>(), out.size(), value);
  return out;
}

Array jnp::full(const Shape& shape, int32_t value) {
  Array out = Array::empty(shape, DType::int32, "full");
  std::fill_n(out.mutable_data<int32_t>(), out.size(), value);
  return out;
}

Array jnp::zeros_like(const Array& a) { return zeros(a.shape(), a.dtype()); }
Array jnp::ones_like(const Array& a) { return ones(a.shape(), a.dtype()); }

Array jnp::stop_gradient(const Array& a) { return a.detached(); }

}  // namespace flaxpp
