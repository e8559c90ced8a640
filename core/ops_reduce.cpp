// Reductions over axis lists: sum, max, min (primitives, one block each in the table below);
// mean, var, logsumexp (composites); argmax (integer, no gradient).
#include <cmath>
#include <limits>

#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/primitive.hpp"

namespace flaxpp {

using namespace prim::authoring;

namespace {

struct Reduction {
  Shape kept;     // shape with reduced axes set to 1 (keepdims=True)
  Shape dropped;  // shape with reduced axes removed
  Axes axes;      // normalised, sorted, unique
  int64_t count = 1;
};

Reduction plan(const Shape& s, const Axes& axes, const char* op) {
  Reduction r;
  std::vector<bool> red(s.size(), axes.empty());
  for (int64_t ax : axes) {
    size_t a = normalize_axis(ax, s.size(), op);
    if (red[a])
      throw std::invalid_argument(std::string(op) + ": duplicate axis " + std::to_string(ax));
    red[a] = true;
  }
  for (size_t i = 0; i < s.size(); ++i) {
    if (red[i]) {
      r.axes.push_back(static_cast<int64_t>(i));
      r.kept.push_back(1);
      r.count *= s[i];
    } else {
      r.kept.push_back(s[i]);
      r.dropped.push_back(s[i]);
    }
  }
  return r;
}

// acc[out(i)] = f(acc[out(i)], a[i]) over every element of a.
template <class Acc, class T, class F>
void reduce_into(const Array& a, const Shape& kept, Acc* acc, F f) {
  const T* p = a.data<T>();
  Shape sa = strides_of(a.shape());
  Shape so = kernels::broadcast_strides(kept, a.shape());
  kernels::for_each_broadcast(
      a.shape(), sa, so, [&](int64_t, int64_t ao, int64_t oo, int64_t n, int64_t as, int64_t os) {
        if (os == 0) {
          Acc v = acc[oo];
          for (int64_t i = 0; i < n; ++i) v = f(v, p[ao + i * as]);
          acc[oo] = v;
        } else {
          for (int64_t i = 0; i < n; ++i) acc[oo + i * os] = f(acc[oo + i * os], p[ao + i * as]);
        }
      });
}

Array finish(Array kept_result, const Reduction& r, bool keepdims) {
  return keepdims ? kept_result : kept_result.reshaped(r.dropped);
}

// Gradient of a reduction: broadcast g (reduced shape) back over the input shape.
Array expand_back(const Array& g, const Reduction& r, const Shape& in) {
  return jnp::broadcast_to(jnp::reshape(g, r.kept), in);
}

// A reduction's batching rule reduces the batched value (batch axis first) over the same axes,
// shifted past the batch axis. (A per-example scalar has no axes to reduce: the callers return
// it unchanged.)
Reduction batched_plan(const Reduction& r, const Shape& batched_shape, const char* op) {
  Axes axes;
  for (int64_t a : r.axes) axes.push_back(a + 1);
  return plan(batched_shape, axes, op);
}

// ============================== the reduction primitives ======================================

// sum over r.axes: float32 accumulates in double (deterministic and at least as accurate as
// XLA's float32 sums), integers in int64.
struct Sum {
  Reduction r;
  bool keepdims;
  static constexpr Save save = Save::nothing;
  const char* name() const { return "sum"; }
  std::string params() const {
    return "axes=" + prim::tuple_str(r.axes) + (keepdims ? " keepdims" : "");
  }
  Array impl(const Array& a) const {
    Array out;
    if (a.dtype() == DType::float32) {
      std::vector<double> acc(static_cast<size_t>(numel(r.kept)), 0.0);
      reduce_into<double, float>(a, r.kept, acc.data(), [](double s, float x) { return s + x; });
      out = Array::from(r.kept, std::vector<float>(acc.begin(), acc.end()));
    } else {
      Array ai = a.dtype() == DType::uint32 ? a : jnp::astype(a, DType::int32);
      std::vector<int64_t> acc(static_cast<size_t>(numel(r.kept)), 0);
      if (a.dtype() == DType::uint32) {
        reduce_into<int64_t, uint32_t>(ai, r.kept, acc.data(),
                                       [](int64_t s, uint32_t x) { return s + x; });
        out = Array::from(r.kept, std::vector<uint32_t>(acc.begin(), acc.end()));
      } else {
        reduce_into<int64_t, int32_t>(ai, r.kept, acc.data(),
                                      [](int64_t s, int32_t x) { return s + x; });
        out = Array::from(r.kept, std::vector<int32_t>(acc.begin(), acc.end()));
      }
    }
    return finish(out, r, keepdims);
  }
  Aval abstract_eval(const Aval& a) const {
    DType d = a.dtype == DType::float32 || a.dtype == DType::uint32 ? a.dtype : DType::int32;
    return {keepdims ? r.kept : r.dropped, d};
  }
  Grads vjp(const Res<1>& res, const Array&, const Array& g, const Need&) const {
    return {expand_back(g, r, res.shape[0])};
  }
  Array jvp(const Res<1>&, const Array&, const Tan<1>& t) const {
    return jnp::sum(t[0], r.axes, keepdims);
  }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    if (r.axes.empty())
      return {
          x[0].is_float() || x[0].dtype() == DType::uint32 ? x[0] : jnp::astype(x[0], DType::int32),
          d[0]};
    Array v = prim::moveaxis(x[0], d[0], 0);
    return {bind(Sum{batched_plan(r, v.shape(), "sum"), keepdims}, v), 0};
  }
};

// max / min over r.axes (NaN wins). Ties share the gradient equally (as JAX's reduce_max rule).
struct Extreme {
  Reduction r;
  bool keepdims;
  bool is_max;
  static constexpr Save save = Save::inputs_and_output;
  const char* name() const { return is_max ? "max" : "min"; }
  std::string params() const {
    return "axes=" + prim::tuple_str(r.axes) + (keepdims ? " keepdims" : "");
  }
  Array impl(const Array& a) const {
    Array out;
    if (a.dtype() == DType::float32) {
      std::vector<float> acc(static_cast<size_t>(numel(r.kept)),
                             is_max ? -std::numeric_limits<float>::infinity()
                                    : std::numeric_limits<float>::infinity());
      reduce_into<float, float>(a, r.kept, acc.data(), [m = is_max](float v, float x) {
        if (std::isnan(v) || std::isnan(x)) return std::numeric_limits<float>::quiet_NaN();
        return m ? (x > v ? x : v) : (x < v ? x : v);
      });
      out = Array::from(r.kept, acc);
    } else {
      Array ai = jnp::astype(a, DType::int32);
      std::vector<int32_t> acc(
          static_cast<size_t>(numel(r.kept)),
          is_max ? std::numeric_limits<int32_t>::min() : std::numeric_limits<int32_t>::max());
      reduce_into<int32_t, int32_t>(ai, r.kept, acc.data(), [m = is_max](int32_t v, int32_t x) {
        return m ? std::max(v, x) : std::min(v, x);
      });
      out = jnp::astype(Array::from(r.kept, acc), a.dtype());
    }
    return finish(out, r, keepdims);
  }
  Aval abstract_eval(const Aval& a) const { return {keepdims ? r.kept : r.dropped, a.dtype}; }
  // 1 where an element equals its slice's extreme, and how many share it.
  std::pair<Array, Array> hits(const Array& a, const Array& out) const {
    Array hit = jnp::astype(jnp::equal(a, jnp::reshape(out, r.kept)), DType::float32);
    return {hit, jnp::sum(hit, r.axes, true)};
  }
  Grads vjp(const Res<1>& res, const Array& out, const Array& g, const Need&) const {
    const Array& a = res.in[0];
    auto [hit, count] = hits(a, out);
    return {hit * expand_back(g, r, a.shape()) / count};
  }
  Array jvp(const Res<1>& res, const Array& out, const Tan<1>& t) const {
    auto [hit, count] = hits(res.in[0], out);
    Array s = jnp::sum(hit * t[0], r.axes, true) / count;
    return keepdims ? s : jnp::reshape(s, r.dropped);
  }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    if (r.axes.empty()) return {x[0], d[0]};
    Array v = prim::moveaxis(x[0], d[0], 0);
    return {bind(Extreme{batched_plan(r, v.shape(), name()), keepdims, is_max}, v), 0};
  }
};

Array extreme(const Array& a, const Axes& axes, bool keepdims, bool is_max) {
  const char* name = is_max ? "max" : "min";
  Reduction r = plan(a.shape(), axes, name);
  if (a.size() == 0 || (r.count == 0))
    throw std::invalid_argument(std::string(name) + ": zero-size reduction over shape " +
                                to_string(a.shape()));
  return bind(Extreme{r, keepdims, is_max}, a);
}

}  // namespace

Array jnp::sum(const Array& a, const Axes& axes, bool keepdims) {
  return bind(Sum{plan(a.shape(), axes, "sum"), keepdims}, a);
}

Array jnp::max(const Array& a, const Axes& axes, bool keepdims) {
  return extreme(a, axes, keepdims, true);
}
Array jnp::min(const Array& a, const Axes& axes, bool keepdims) {
  return extreme(a, axes, keepdims, false);
}

Array jnp::mean(const Array& a, const Axes& axes, bool keepdims) {
  Reduction r = plan(a.shape(), axes, "mean");
  return jnp::sum(jnp::astype(a, DType::float32), axes, keepdims) / static_cast<float>(r.count);
}

// Population variance (ddof = 0), two-pass: mean((a - mean(a))^2).
Array jnp::var(const Array& a, const Axes& axes, bool keepdims) {
  Array x = jnp::astype(a, DType::float32);
  Array centered = x - jnp::mean(x, axes, true);
  return jnp::mean(centered * centered, axes, keepdims);
}

// log(sum(exp(a))) computed as m + log(sum(exp(a - m))) with m = max (no gradient through m).
Array jnp::logsumexp(const Array& a, const Axes& axes, bool keepdims) {
  Array m = jnp::stop_gradient(jnp::max(a, axes, true));
  Array finite_m =
      jnp::where(jnp::equal(jnp::abs(m), std::numeric_limits<float>::infinity()), Array(0.f), m);
  Array s = jnp::log(jnp::sum(jnp::exp(a - finite_m), axes, true)) + finite_m;
  if (keepdims) return s;
  return jnp::reshape(s, plan(a.shape(), axes, "logsumexp").dropped);
}

namespace {

// argmax along one axis: int32 indices, the first of equal maxima, the first NaN (as NumPy).
struct Argmax {
  size_t ax;
  bool keepdims;
  static constexpr bool differentiable = false;
  const char* name() const { return "argmax"; }
  std::string params() const {
    return "axes=(" + std::to_string(ax) + ",)" + (keepdims ? " keepdims" : "");
  }
  Array impl(const Array& a) const {
    Array x = jnp::astype(a, DType::float32);
    Reduction r = plan(a.shape(), {static_cast<int64_t>(ax)}, "argmax");
    int64_t outer = 1, n = a.shape()[ax], inner = 1;
    for (size_t i = 0; i < ax; ++i) outer *= a.shape()[i];
    for (size_t i = ax + 1; i < a.ndim(); ++i) inner *= a.shape()[i];
    Array out = Array::empty(r.kept, DType::int32);
    const float* p = x.data<float>();
    int32_t* o = out.mutable_data<int32_t>();
    for (int64_t i = 0; i < outer; ++i)
      for (int64_t k = 0; k < inner; ++k) {
        int64_t best = 0;
        float bv = p[i * n * inner + k];
        for (int64_t j = 1; j < n && !std::isnan(bv); ++j) {
          float v = p[(i * n + j) * inner + k];
          if (v > bv || std::isnan(v)) bv = v, best = j;  // first NaN wins, as NumPy
        }
        o[i * inner + k] = static_cast<int32_t>(best);
      }
    return finish(out, r, keepdims);
  }
  Aval abstract_eval(const Aval& a) const {
    Reduction r = plan(a.shape, {static_cast<int64_t>(ax)}, "argmax");
    return {keepdims ? r.kept : r.dropped, DType::int32};
  }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    return {bind(Argmax{ax + 1, keepdims}, prim::moveaxis(x[0], d[0], 0)), 0};
  }
};

}  // namespace

Array jnp::argmax(const Array& a, int64_t axis, bool keepdims) {
  size_t ax = normalize_axis(axis, a.ndim(), "argmax");
  if (a.shape()[ax] == 0)
    throw std::invalid_argument("argmax: zero-size axis in shape " + to_string(a.shape()));
  return bind(Argmax{ax, keepdims}, a);
}

}  // namespace flaxpp
