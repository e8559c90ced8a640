// Elementwise primitives: the kernels, then one block per primitive (kernel, shape/dtype rule,
// vjp and jvp rules), then the jnp:: functions that bind them.
#include <cmath>
#include <numbers>

#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/parallel.hpp"
#include "core/primitive.hpp"
#include "core/simd/kernels.hpp"

namespace flaxpp {

using namespace prim::authoring;

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
          shape, sa, sb, lo, hi,
          [&](int64_t oi, int64_t ao, int64_t bo, int64_t m, int64_t as, int64_t bs) {
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
  if (d == DType::float32)
    return binary_kernel<float, float>(convert<float>(a), convert<float>(b), name, fop);
  if (d == DType::uint32)
    return binary_kernel<uint32_t, uint32_t>(convert<uint32_t>(a), convert<uint32_t>(b), name, iop);
  return binary_kernel<int32_t, int32_t>(convert<int32_t>(a), convert<int32_t>(b), name, iop);
}

template <class Op>
Array compare(const Array& a, const Array& b, const char* name, Op op) {
  DType d = promote(a.dtype(), b.dtype());
  if (a.dtype() == DType::bool_ && b.dtype() == DType::bool_) d = DType::int32;
  if (d == DType::float32)
    return binary_kernel<float, uint8_t>(convert<float>(a), convert<float>(b), name, op);
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

// Both cotangents of a binary rule, each computed only if needed.
Grads both(const Need& need, auto first, auto second) {
  return {need[0] ? first() : Array(), need[1] ? second() : Array()};
}

// The shape/dtype rules shared by the elementwise families.
Aval broadcast_aval(const Aval& a, const Aval& b, const char* name, DType out) {
  return {a.shape == b.shape ? a.shape : broadcast_shapes(a.shape, b.shape, name), out};
}
struct UnaryFloat {
  Aval abstract_eval(const Aval& a) const { return {a.shape, DType::float32}; }
};
struct UnaryKeepsOutput : UnaryFloat {  // rules read only the output (exp, tanh, sqrt, ...)
  static constexpr Save save = Save::output;
};

// ============================= the elementwise primitives ====================================
// One block per primitive: kernel (impl), shape/dtype rule, vjp (the transpose, summing over
// broadcast axes) and jvp (the linearisation, with tangents shaped like the inputs).

struct Add {
  static constexpr Save save = Save::nothing;
  const char* name() const { return "add"; }
  Array impl(const Array& a, const Array& b) const {
    return arith(
        a, b, "add", [](float x, float y) { return x + y; }, [](auto x, auto y) { return x + y; });
  }
  Aval abstract_eval(const Aval& a, const Aval& b) const {
    return broadcast_aval(a, b, "add", promote(a.dtype, b.dtype));
  }
  Grads vjp(const Res<2>& r, const Array&, const Array& g, const Need& n) const {
    return both(
        n, [&] { return unbroadcast(g, r.shape[0]); }, [&] { return unbroadcast(g, r.shape[1]); });
  }
  Array jvp(const Res<2>&, const Array&, const Tan<2>& t) const { return t[0] + t[1]; }
  Mapped batch(const Vals<2>& x, const Dims<2>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

struct Subtract {
  static constexpr Save save = Save::nothing;
  const char* name() const { return "subtract"; }
  Array impl(const Array& a, const Array& b) const {
    return arith(
        a, b, "subtract", [](float x, float y) { return x - y; },
        [](auto x, auto y) { return x - y; });
  }
  Aval abstract_eval(const Aval& a, const Aval& b) const {
    return broadcast_aval(a, b, "subtract", promote(a.dtype, b.dtype));
  }
  Grads vjp(const Res<2>& r, const Array&, const Array& g, const Need& n) const {
    return both(
        n, [&] { return unbroadcast(g, r.shape[0]); }, [&] { return unbroadcast(-g, r.shape[1]); });
  }
  Array jvp(const Res<2>&, const Array&, const Tan<2>& t) const { return t[0] - t[1]; }
  Mapped batch(const Vals<2>& x, const Dims<2>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

struct Multiply {
  static constexpr Save save = Save::inputs;
  const char* name() const { return "multiply"; }
  Array impl(const Array& a, const Array& b) const {
    return arith(
        a, b, "multiply", [](float x, float y) { return x * y; },
        [](auto x, auto y) { return x * y; });
  }
  Aval abstract_eval(const Aval& a, const Aval& b) const {
    return broadcast_aval(a, b, "multiply", promote(a.dtype, b.dtype));
  }
  Grads vjp(const Res<2>& r, const Array&, const Array& g, const Need& n) const {
    const Array &a = r.in[0], &b = r.in[1];
    return both(
        n, [&] { return unbroadcast(g * b, a.shape()); },
        [&] { return unbroadcast(g * a, b.shape()); });
  }
  Array jvp(const Res<2>& r, const Array&, const Tan<2>& t) const {
    return t[0] * r.in[1] + r.in[0] * t[1];
  }
  Mapped batch(const Vals<2>& x, const Dims<2>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

// True division, as jnp.divide: integer operands give float32.
struct Divide {
  static constexpr Save save = Save::inputs;
  const char* name() const { return "divide"; }
  Array impl(const Array& a, const Array& b) const {
    return binary_kernel<float, float>(convert<float>(a), convert<float>(b), "divide",
                                       [](float x, float y) { return x / y; });
  }
  Aval abstract_eval(const Aval& a, const Aval& b) const {
    return broadcast_aval(a, b, "divide", DType::float32);
  }
  Grads vjp(const Res<2>& r, const Array&, const Array& g, const Need& n) const {
    const Array &a = r.in[0], &b = r.in[1];
    return both(
        n, [&] { return unbroadcast(g / b, a.shape()); },
        [&] { return unbroadcast(-(g * a) / (b * b), b.shape()); });
  }
  Array jvp(const Res<2>& r, const Array&, const Tan<2>& t) const {
    const Array &a = r.in[0], &b = r.in[1];
    return t[0] / b - (t[1] * a) / (b * b);
  }
  Mapped batch(const Vals<2>& x, const Dims<2>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

struct Negative {
  static constexpr Save save = Save::nothing;
  const char* name() const { return "negative"; }
  Array impl(const Array& a) const {
    if (a.is_float()) return unary_float(a, [](float x) { return -x; });
    return arith(
        Array(0), a, "negative", [](float x, float y) { return x - y; },
        [](auto x, auto y) { return x - y; });
  }
  Aval abstract_eval(const Aval& a) const { return {a.shape, promote(DType::int32, a.dtype)}; }
  Grads vjp(const Res<1>&, const Array&, const Array& g, const Need&) const { return {-g}; }
  Array jvp(const Res<1>&, const Array&, const Tan<1>& t) const { return -t[0]; }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

// x ** y. d/dx = y x^(y-1); d/dy = x^y log x, taken as 0 where x == 0 (as JAX).
struct Power {
  static constexpr Save save = Save::inputs_and_output;
  const char* name() const { return "power"; }
  Array impl(const Array& a, const Array& b) const {
    return binary_kernel<float, float>(convert<float>(a), convert<float>(b), "power",
                                       [](float x, float y) { return std::pow(x, y); });
  }
  Aval abstract_eval(const Aval& a, const Aval& b) const {
    return broadcast_aval(a, b, "power", DType::float32);
  }
  static Array safe_log(const Array& a) {
    return jnp::where(jnp::equal(a, 0.f), Array(0.f),
                      jnp::log(jnp::where(jnp::equal(a, 0.f), Array(1.f), a)));
  }
  Grads vjp(const Res<2>& r, const Array& out, const Array& g, const Need& n) const {
    const Array &a = r.in[0], &b = r.in[1];
    return both(
        n, [&] { return unbroadcast(g * b * jnp::power(a, b - 1.f), a.shape()); },
        [&] { return unbroadcast(g * out * safe_log(a), b.shape()); });
  }
  // Only perturbed operands contribute: x^3 at x < 0 has a finite derivative, though its
  // exponent's term (log x) is NaN there.
  Array jvp(const Res<2>& r, const Array& out, const Tan<2>& t) const {
    const Array &a = r.in[0], &b = r.in[1];
    Array da = t[0] * b * jnp::power(a, b - 1.f);
    if (!t.perturbed[1]) return da;
    Array db = t[1] * out * safe_log(a);
    return t.perturbed[0] ? da + db : db;
  }
  Mapped batch(const Vals<2>& x, const Dims<2>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

struct Exp : UnaryKeepsOutput {
  const char* name() const { return "exp"; }
  Array impl(const Array& a) const { return unary_simd(a, simd::kernels().exp); }
  Grads vjp(const Res<1>&, const Array& out, const Array& g, const Need&) const {
    return {g * out};
  }
  Array jvp(const Res<1>&, const Array& out, const Tan<1>& t) const { return t[0] * out; }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

struct Log : UnaryFloat {
  static constexpr Save save = Save::inputs;
  const char* name() const { return "log"; }
  Array impl(const Array& a) const { return unary_simd(a, simd::kernels().log); }
  Grads vjp(const Res<1>& r, const Array&, const Array& g, const Need&) const {
    return {g / r.in[0]};
  }
  Array jvp(const Res<1>& r, const Array&, const Tan<1>& t) const { return t[0] / r.in[0]; }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

struct Log1p : UnaryFloat {
  static constexpr Save save = Save::inputs;
  const char* name() const { return "log1p"; }
  Array impl(const Array& a) const { return unary_simd(a, simd::kernels().log1p); }
  Grads vjp(const Res<1>& r, const Array&, const Array& g, const Need&) const {
    return {g / (r.in[0] + 1.f)};
  }
  Array jvp(const Res<1>& r, const Array&, const Tan<1>& t) const { return t[0] / (r.in[0] + 1.f); }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

struct Expm1 : UnaryKeepsOutput {
  const char* name() const { return "expm1"; }
  Array impl(const Array& a) const { return unary_simd(a, simd::kernels().expm1); }
  Grads vjp(const Res<1>&, const Array& out, const Array& g, const Need&) const {
    return {g * (out + 1.f)};
  }
  Array jvp(const Res<1>&, const Array& out, const Tan<1>& t) const { return t[0] * (out + 1.f); }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

struct Tanh : UnaryKeepsOutput {
  const char* name() const { return "tanh"; }
  Array impl(const Array& a) const { return unary_simd(a, simd::kernels().tanh); }
  Grads vjp(const Res<1>&, const Array& out, const Array& g, const Need&) const {
    return {g * (1.f - out * out)};
  }
  Array jvp(const Res<1>&, const Array& out, const Tan<1>& t) const {
    return t[0] * (1.f - out * out);
  }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

// jax.nn.sigmoid is the primitive lax.logistic, with the fused rule d/dx = s (1 - s). Chaining
// exp's and divide's rules instead gives 0 * inf = NaN once exp(-x) overflows (x < -88.7).
struct Logistic : UnaryKeepsOutput {
  const char* name() const { return "logistic"; }
  Array impl(const Array& x) const { return 1.f / (1.f + jnp::exp(-x.detached())); }
  Grads vjp(const Res<1>&, const Array& out, const Array& g, const Need&) const {
    return {g * out * (1.f - out)};
  }
  Array jvp(const Res<1>&, const Array& out, const Tan<1>& t) const {
    return t[0] * out * (1.f - out);
  }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

struct Sqrt : UnaryKeepsOutput {
  const char* name() const { return "sqrt"; }
  Array impl(const Array& a) const {
    return unary_float(a, [](float x) { return std::sqrt(x); });
  }
  Grads vjp(const Res<1>&, const Array& out, const Array& g, const Need&) const {
    return {g * 0.5f / out};
  }
  Array jvp(const Res<1>&, const Array& out, const Tan<1>& t) const { return t[0] * 0.5f / out; }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

// d/dx x^-1/2 = -1/2 x^-3/2 = -1/2 out / x
struct Rsqrt : UnaryFloat {
  static constexpr Save save = Save::inputs_and_output;
  const char* name() const { return "rsqrt"; }
  Array impl(const Array& a) const {
    return unary_float(a, [](float x) { return 1.f / std::sqrt(x); });
  }
  Grads vjp(const Res<1>& r, const Array& out, const Array& g, const Need&) const {
    return {g * -0.5f * out / r.in[0]};
  }
  Array jvp(const Res<1>& r, const Array& out, const Tan<1>& t) const {
    return t[0] * -0.5f * out / r.in[0];
  }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

struct Erf : UnaryFloat {
  static constexpr Save save = Save::inputs;
  const char* name() const { return "erf"; }
  Array impl(const Array& a) const {
    return unary_float(a, [](float x) { return std::erf(x); });
  }
  static Array slope(const Array& a) {
    return static_cast<float>(2.0 / std::sqrt(std::numbers::pi)) * jnp::exp(-(a * a));
  }
  Grads vjp(const Res<1>& r, const Array&, const Array& g, const Need&) const {
    return {g * static_cast<float>(2.0 / std::sqrt(std::numbers::pi)) *
            jnp::exp(-(r.in[0] * r.in[0]))};
  }
  Array jvp(const Res<1>& r, const Array&, const Tan<1>& t) const { return t[0] * slope(r.in[0]); }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

// |x| of float32; d/dx = sign(x), 0 at 0 (JAX's rule).
struct Abs : UnaryFloat {
  static constexpr Save save = Save::inputs;
  const char* name() const { return "abs"; }
  Array impl(const Array& a) const {
    return unary_float(a, [](float x) { return std::fabs(x); });
  }
  Grads vjp(const Res<1>& r, const Array&, const Array& g, const Need&) const {
    return {g * jnp::sign(r.in[0])};
  }
  Array jvp(const Res<1>& r, const Array&, const Tan<1>& t) const {
    return t[0] * jnp::sign(r.in[0]);
  }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

// maximum / minimum. On ties the gradient is split evenly between the operands (as
// jax.numpy.maximum); NaN wins.
struct Choose {
  bool take_max;
  static constexpr Save save = Save::inputs;
  const char* name() const { return take_max ? "maximum" : "minimum"; }
  Array impl(const Array& a, const Array& b) const {
    if (take_max)
      return arith(
          a, b, name(), [](float x, float y) { return std::isnan(x) || x > y ? x : y; },
          [](auto x, auto y) { return x > y ? x : y; });
    return arith(
        a, b, name(), [](float x, float y) { return std::isnan(x) || x < y ? x : y; },
        [](auto x, auto y) { return x < y ? x : y; });
  }
  Aval abstract_eval(const Aval& a, const Aval& b) const {
    return broadcast_aval(a, b, name(), promote(a.dtype, b.dtype));
  }
  // How much of the output each point owes to `a`: 1 where a wins, 0.5 on ties.
  Array share_of_a(const Array& a, const Array& b) const {
    Array wins = convert<float>(take_max ? jnp::greater(a, b) : jnp::less(a, b));
    Array ties = convert<float>(jnp::equal(a, b)) * 0.5f;
    return wins + ties;
  }
  Grads vjp(const Res<2>& r, const Array&, const Array& g, const Need& n) const {
    const Array &a = r.in[0], &b = r.in[1];
    Array wa = share_of_a(a, b);
    return both(
        n, [&] { return unbroadcast(g * wa, a.shape()); },
        [&] { return unbroadcast(g * (1.f - wa), b.shape()); });
  }
  Array jvp(const Res<2>& r, const Array&, const Tan<2>& t) const {
    Array wa = share_of_a(r.in[0], r.in[1]);
    return t[0] * wa + t[1] * (1.f - wa);
  }
  Mapped batch(const Vals<2>& x, const Dims<2>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

// sign of float32 (integer sign is composed from comparisons); its derivative is 0 (JAX).
struct Sign : UnaryFloat {  // no rules: nothing is recorded for it
  static constexpr bool differentiable = false;
  const char* name() const { return "sign"; }
  Array impl(const Array& a) const {
    return unary_float(a, [](float x) { return x > 0 ? 1.f : x < 0 ? -1.f : x; });
  }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

// where(cond, a, b): `cond` is bool and never differentiated; the rules keep only it.
struct Where {
  static constexpr Save save = Save::nothing;
  static constexpr std::array<bool, 3> kept_inputs{true, false, false};
  const char* name() const { return "where"; }
  Array impl(const Array& cond, const Array& a0, const Array& b0) const;
  Aval abstract_eval(const Aval& c, const Aval& a, const Aval& b) const {
    DType d = a.dtype == DType::bool_ && b.dtype == DType::bool_ ? DType::bool_
                                                                 : promote(a.dtype, b.dtype);
    return broadcast_aval(broadcast_aval(c, a, "where", d), b, "where", d);
  }
  Grads vjp(const Res<3>& r, const Array&, const Array& g, const Need& n) const {
    Array zero(0.f);
    const Array& cond = r.in[0];
    return {Array(), n[1] ? unbroadcast(jnp::where(cond, g, zero), r.shape[1]) : Array(),
            n[2] ? unbroadcast(jnp::where(cond, zero, g), r.shape[2]) : Array()};
  }
  Array jvp(const Res<3>& r, const Array&, const Tan<3>& t) const {
    return jnp::where(r.in[0], t[1], t[2]);
  }
  Mapped batch(const Vals<3>& x, const Dims<3>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

Array Where::impl(const Array& cond, const Array& a0, const Array& b0) const {
  DType d = promote(a0.dtype(), b0.dtype());
  if (a0.dtype() == DType::bool_ && b0.dtype() == DType::bool_) d = DType::bool_;
  Array a = convert_to(a0, d), b = convert_to(b0, d);
  Shape shape =
      broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
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
  kernels::for_each_broadcast(shape, sb, sb,
                              [&](int64_t o, int64_t bo, int64_t, int64_t m, int64_t bs, int64_t) {
                                for (int64_t i = 0; i < m; ++i) boff[o + i] = bo + i * bs;
                              });
  kernels::for_each_broadcast(
      shape, sc, sa, [&](int64_t o, int64_t co, int64_t ao, int64_t m, int64_t cs, int64_t as) {
        for (int64_t i = 0; i < m; ++i) {
          const char* src = pc[co + i * cs] ? pa + (ao + i * as) * isz : pb + boff[o + i] * isz;
          std::memcpy(po + (o + i) * isz, src, isz);
        }
      });
  return out;
}

}  // namespace

// ---- the public face: jnp:: functions bind the primitives above -----------------------------

Array jnp::add(const Array& a, const Array& b) { return bind(Add{}, a, b); }
Array jnp::subtract(const Array& a, const Array& b) { return bind(Subtract{}, a, b); }
Array jnp::multiply(const Array& a, const Array& b) { return bind(Multiply{}, a, b); }
Array jnp::divide(const Array& a, const Array& b) { return bind(Divide{}, a, b); }
Array jnp::negative(const Array& a) { return bind(Negative{}, a); }

Array operator+(const Array& a, const Array& b) { return jnp::add(a, b); }
Array operator-(const Array& a, const Array& b) { return jnp::subtract(a, b); }
Array operator*(const Array& a, const Array& b) { return jnp::multiply(a, b); }
Array operator/(const Array& a, const Array& b) { return jnp::divide(a, b); }
Array operator-(const Array& a) { return jnp::negative(a); }

Array jnp::power(const Array& a, const Array& b) { return bind(Power{}, a, b); }
Array jnp::exp(const Array& a) { return bind(Exp{}, a); }
Array jnp::log(const Array& a) { return bind(Log{}, a); }
Array jnp::log1p(const Array& a) { return bind(Log1p{}, a); }
Array jnp::expm1(const Array& a) { return bind(Expm1{}, a); }
Array jnp::tanh(const Array& a) { return bind(Tanh{}, a); }
Array jnp::sqrt(const Array& a) { return bind(Sqrt{}, a); }
Array jnp::rsqrt(const Array& a) { return bind(Rsqrt{}, a); }
Array jnp::erf(const Array& a) { return bind(Erf{}, a); }
Array lax::logistic(const Array& a) { return bind(Logistic{}, a); }

Array jnp::abs(const Array& a) {
  if (!a.is_float()) return jnp::where(jnp::less(a, Array(0)), jnp::negative(a), a);
  return bind(Abs{}, a);
}

// sign has zero derivative everywhere (JAX): no node is recorded.
Array jnp::sign(const Array& a) {
  if (!a.is_float())
    return convert_to(jnp::subtract(convert<int32_t>(jnp::greater(a, Array(0))),
                                    convert<int32_t>(jnp::less(a, Array(0)))),
                      a.dtype());
  return bind(Sign{}, a);
}

Array jnp::square(const Array& a) { return a * a; }

Array jnp::maximum(const Array& a, const Array& b) { return bind(Choose{true}, a, b); }
Array jnp::minimum(const Array& a, const Array& b) { return bind(Choose{false}, a, b); }

Array jnp::clip(const Array& a, float lo, float hi) {
  return jnp::minimum(jnp::maximum(a, Array(lo)), Array(hi));
}

Array jnp::where(const Array& cond0, const Array& a0, const Array& b0) {
  Array cond = cond0.dtype() == DType::bool_                 ? cond0
               : prim::batched(cond0) || prim::traced(cond0) ? jnp::not_equal(cond0, Array(0))
                                                             : convert_to(cond0, DType::bool_);
  return bind(Where{}, cond, a0, b0);
}

// ---- comparisons (bool results, no gradient) -------------------------------------------------

namespace {

// Primitives without a derivative (bool or integer results, or zero derivative everywhere):
// a kernel, a shape/dtype rule and a batching rule; nothing is recorded for them.

enum class Cmp { equal, not_equal, less, less_equal, greater, greater_equal };
struct Compare {
  Cmp cmp;
  static constexpr bool differentiable = false;
  const char* name() const {
    static constexpr const char* names[] = {"equal",      "not_equal", "less",
                                            "less_equal", "greater",   "greater_equal"};
    return names[static_cast<int>(cmp)];
  }
  Array impl(const Array& a, const Array& b) const {
    switch (cmp) {
      case Cmp::equal:
        return compare(a, b, "equal", [](auto x, auto y) { return uint8_t(x == y); });
      case Cmp::not_equal:
        return compare(a, b, "not_equal", [](auto x, auto y) { return uint8_t(x != y); });
      case Cmp::less: return compare(a, b, "less", [](auto x, auto y) { return uint8_t(x < y); });
      case Cmp::less_equal:
        return compare(a, b, "less_equal", [](auto x, auto y) { return uint8_t(x <= y); });
      case Cmp::greater:
        return compare(a, b, "greater", [](auto x, auto y) { return uint8_t(x > y); });
      case Cmp::greater_equal: break;
    }
    return compare(a, b, "greater_equal", [](auto x, auto y) { return uint8_t(x >= y); });
  }
  Aval abstract_eval(const Aval& a, const Aval& b) const {
    return broadcast_aval(a, b, name(), DType::bool_);
  }
  Mapped batch(const Vals<2>& x, const Dims<2>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

struct LogicalNot {
  static constexpr bool differentiable = false;
  const char* name() const { return "not"; }
  Array impl(const Array& a) const {
    Array b = convert_to(a, DType::bool_);
    Array out = Array::empty(b.shape(), DType::bool_);
    const uint8_t* p = b.data<uint8_t>();
    uint8_t* o = out.mutable_data<uint8_t>();
    for (int64_t i = 0, n = b.size(); i < n; ++i) o[i] = !p[i];
    return out;
  }
  Aval abstract_eval(const Aval& a) const { return {a.shape, DType::bool_}; }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

// astype to another dtype (float32 -> float32 is the identity and binds nothing).
struct ConvertElementType {
  DType to;
  static constexpr bool differentiable = false;
  const char* name() const { return "convert_element_type"; }
  std::string params() const { return std::string("new_dtype=") + dtype_name(to); }
  Array impl(const Array& a) const { return convert_to(a, to); }
  Aval abstract_eval(const Aval& a) const { return {a.shape, to}; }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return prim::batch_elementwise(*this, x, d);
  }
};

}  // namespace

Array jnp::equal(const Array& a, const Array& b) { return bind(Compare{Cmp::equal}, a, b); }
Array jnp::not_equal(const Array& a, const Array& b) { return bind(Compare{Cmp::not_equal}, a, b); }
Array jnp::less(const Array& a, const Array& b) { return bind(Compare{Cmp::less}, a, b); }
Array jnp::less_equal(const Array& a, const Array& b) {
  return bind(Compare{Cmp::less_equal}, a, b);
}
Array jnp::greater(const Array& a, const Array& b) { return bind(Compare{Cmp::greater}, a, b); }
Array jnp::greater_equal(const Array& a, const Array& b) {
  return bind(Compare{Cmp::greater_equal}, a, b);
}

Array jnp::logical_not(const Array& a) { return bind(LogicalNot{}, a); }

// ---- dtype conversion and creation -------------------------------------------------------------

Array jnp::astype(const Array& a, DType dtype) {
  if (a.dtype() != dtype) return bind(ConvertElementType{dtype}, a);
  if (prim::batched(a)) return a;
  // float32 -> float32 is the identity: `a`, node included, while it is being differentiated.
  return a.node() && !autodiff::needs_grad(a) ? a.detached() : a;
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

Array jnp::stop_gradient(const Array& a) {
  if (prim::traced(a)) return a;  // the identity in a jaxpr (nothing differentiates it there)
  if (const prim::BatchPayload* b = prim::batched(a))  // the batch stays, its gradient goes
    return prim::wrap(jnp::stop_gradient(b->value), b->bdim, b->level, b->size);
  return a.detached();
}

}  // namespace flaxpp
