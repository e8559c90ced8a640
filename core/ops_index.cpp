// Joining, splitting, slicing, gathering and masking primitives. Each forward kernel sits with
// its vjp rule; the transposes (pad for slice, scatter-add for the gathers) are primitives too,
// whose own rules are the forward ops, so grad-of-grad works.
#include <cmath>
#include <cstring>
#include <string>

#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/parallel.hpp"
#include "core/primitive.hpp"

namespace flaxpp {

using autodiff::needs_grad;
using autodiff::record;

namespace {

std::string str(int64_t v) { return std::to_string(v); }

// Copies `n` elements of `isz` bytes with source stride `ss` (elements) into contiguous `dst`.
inline void gather_run(char* dst, const char* src, int64_t n, int64_t ss, size_t isz) {
  if (ss == 1) {
    std::memcpy(dst, src, static_cast<size_t>(n) * isz);
  } else if (isz == 4) {
    auto* d = reinterpret_cast<uint32_t*>(dst);
    auto* s = reinterpret_cast<const uint32_t*>(src);
    for (int64_t i = 0; i < n; ++i) d[i] = s[i * ss];
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i * ss];
  }
}

// ---- slice and its transpose, pad --------------------------------------------------------------

// A strided box of an array: out[i0, i1, ...] = in[start0 + i0 * step0, start1 + i1 * step1, ...].
struct Window {
  Shape in_shape, out_shape, start, step;
  bool is_identity() const {
    if (in_shape != out_shape) return false;
    for (size_t d = 0; d < in_shape.size(); ++d)
      if (start[d] != 0 || (step[d] != 1 && in_shape[d] > 1)) return false;
    return true;
  }
};

Window full_window(const Shape& s) {
  Window w{s, s, s, s};
  for (size_t d = 0; d < s.size(); ++d) w.start[d] = 0, w.step[d] = 1;
  return w;
}

// Python's slice.indices() for step > 0: clamps start/stop into [0, n] and returns the count.
int64_t python_slice(int64_t n, int64_t& start, int64_t stop, int64_t step, const char* op) {
  if (step <= 0)
    throw std::invalid_argument(std::string(op) + ": step must be positive, got " + str(step));
  auto clamp = [n](int64_t i) { return i < 0 ? std::max<int64_t>(i + n, 0) : std::min(i, n); };
  start = clamp(start);
  stop = clamp(stop);
  return stop > start ? (stop - start + step - 1) / step : 0;
}

// Offsets of the window's elements in the input, walked in output order.
template <class Fn>
void walk_window(const Window& w, Fn fn) {
  Shape st = strides_of(w.in_shape), wst = st;
  int64_t base = 0;
  for (size_t d = 0; d < st.size(); ++d) {
    base += w.start[d] * st[d];
    wst[d] = st[d] * w.step[d];
  }
  kernels::for_each_broadcast(w.out_shape, wst, wst,
                              [&](int64_t o, int64_t so, int64_t, int64_t n, int64_t ss, int64_t) {
                                fn(o, base + so, n, ss);
                              });
}

Array pad_window(const Array& g, const Window& w);

// Calls fn(sub, o0) for blocks of the window, on the pool when it is large: `sub` is the window
// cut to a range of its first axis of extent > 1 (all axes before it have extent 1), and `o0` is
// the offset of sub's first element in the whole window's output. Input offsets stay global.
constexpr int64_t kCopyGrain = int64_t{1} << 15;  // elements per task
template <class Fn>
void for_window_blocks(const Window& w, Fn fn) {
  int64_t total = numel(w.out_shape);
  size_t ax = 0;
  while (ax < w.out_shape.size() && w.out_shape[ax] == 1) ++ax;
  if (total < 2 * kCopyGrain || ax == w.out_shape.size()) return fn(w, int64_t{0});
  int64_t rows = w.out_shape[ax], row = total / rows;
  parallel_for(rows, std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(row, 1)),
               [&](int64_t lo, int64_t hi) {
                 Window sub = w;
                 sub.out_shape[ax] = hi - lo;
                 sub.start[ax] = w.start[ax] + lo * w.step[ax];
                 fn(sub, lo * row);
               });
}

Array slice_window(const Array& a, const Window& w) {
  if (w.is_identity()) return a;
  Array out = Array::empty(w.out_shape, a.dtype());
  size_t isz = itemsize(a.dtype());
  const char* src = static_cast<const char*>(a.raw());
  char* dst = static_cast<char*>(out.mutable_raw());
  for_window_blocks(w, [&](const Window& sub, int64_t o0) {
    walk_window(sub, [&](int64_t o, int64_t so, int64_t n, int64_t ss) {
      gather_run(dst + (o0 + o) * isz, src + so * isz, n, ss, isz);
    });
  });
  if (!needs_grad(a)) return out;
  return record("slice", out, {&a},
                [w](const Array& g, const Array&, const Need&) { return Grads{pad_window(g, w)}; });
}

// The transpose of slice_window: zeros of the input shape with g written into the window.
Array pad_window(const Array& g, const Window& w) {
  if (w.is_identity()) return g;
  Array out = jnp::zeros(w.in_shape, DType::float32);
  float* dst = out.mutable_data<float>();
  const float* src = g.data<float>();
  for_window_blocks(w, [&](const Window& sub, int64_t o0) {
    walk_window(sub, [&](int64_t o, int64_t so, int64_t n, int64_t ss) {
      if (ss == 1)
        std::memcpy(dst + so, src + o0 + o, static_cast<size_t>(n) * sizeof(float));
      else
        for (int64_t i = 0; i < n; ++i) dst[so + i * ss] = src[o0 + o + i];
    });
  });
  if (!needs_grad(g)) return out;
  return record("pad", out, {&g}, [w](const Array& gg, const Array&, const Need&) {
    return Grads{slice_window(gg, w)};
  });
}

// ---- gathers: take, take_along_axis, and their scatter-add transposes --------------------------

const int32_t* int_indices(const Array& indices, const char* op) {
  if (indices.dtype() != DType::int32)
    throw std::invalid_argument(std::string(op) + ": indices must be int32, got " +
                                dtype_name(indices.dtype()));
  return indices.data<int32_t>();
}

// Indices wrapped into [0, n); throws on anything outside [-n, n).
Array checked_indices(const Array& indices, int64_t n, size_t axis, const char* op) {
  const int32_t* p = int_indices(indices, op);
  bool has_negative = false;
  for (int64_t i = 0; i < indices.size(); ++i) {
    if (p[i] < -n || p[i] >= n)
      throw std::invalid_argument(std::string(op) + ": index " + str(p[i]) +
                                  " is out of bounds for axis " + str(static_cast<int64_t>(axis)) +
                                  " with size " + str(n));
    has_negative = has_negative || p[i] < 0;
  }
  if (!has_negative) return indices.detached();
  Array out = Array::empty(indices.shape(), DType::int32);
  int32_t* o = out.mutable_data<int32_t>();
  for (int64_t i = 0; i < indices.size(); ++i)
    o[i] = p[i] < 0 ? static_cast<int32_t>(p[i] + n) : p[i];
  return out;
}

// a viewed as (outer, n, inner) around `axis`.
struct Around {
  int64_t outer = 1, n = 1, inner = 1;
  Around(const Shape& s, size_t axis) {
    for (size_t d = 0; d < s.size(); ++d) (d < axis ? outer : d == axis ? n : inner) *= s[d];
  }
};

Array take_checked(const Array& a, const Array& idx, size_t ax);

// The transpose of take: zeros of `in_shape` with g's slices added at the gathered positions.
Array take_scatter(const Array& g, const Array& idx, size_t ax, const Shape& in_shape) {
  Around r(in_shape, ax);
  Array out = jnp::zeros(in_shape, DType::float32);
  float* o = out.mutable_data<float>();
  const float* pg = g.data<float>();
  const int32_t* pi = idx.data<int32_t>();
  int64_t m = idx.size();
  for (int64_t i = 0; i < r.outer; ++i)
    for (int64_t j = 0; j < m; ++j) {
      float* dst = o + (i * r.n + pi[j]) * r.inner;
      const float* src = pg + (i * m + j) * r.inner;
      for (int64_t k = 0; k < r.inner; ++k) dst[k] += src[k];
    }
  if (!needs_grad(g)) return out;
  return record("take_scatter", out, {&g}, [idx, ax](const Array& gg, const Array&, const Need&) {
    return Grads{take_checked(gg, idx, ax)};
  });
}

// take with indices already wrapped into [0, n).
Array take_checked(const Array& a, const Array& idx, size_t ax) {
  Around r(a.shape(), ax);
  Shape out_shape;
  for (size_t d = 0; d < ax; ++d) out_shape.push_back(a.shape()[d]);
  for (int64_t d : idx.shape()) out_shape.push_back(d);
  for (size_t d = ax + 1; d < a.ndim(); ++d) out_shape.push_back(a.shape()[d]);
  Array out = Array::empty(out_shape, a.dtype());
  size_t isz = itemsize(a.dtype());
  size_t row = static_cast<size_t>(r.inner) * isz;
  const char* src = static_cast<const char*>(a.raw());
  char* dst = static_cast<char*>(out.mutable_raw());
  const int32_t* pi = idx.data<int32_t>();
  int64_t m = idx.size();
  for (int64_t i = 0; i < r.outer; ++i)
    for (int64_t j = 0; j < m; ++j)
      std::memcpy(dst + (i * m + j) * row, src + (i * r.n + pi[j]) * row, row);
  if (!needs_grad(a)) return out;
  return record("take", out, {&a},
                [idx, ax, in = a.shape()](const Array& g, const Array&, const Need&) {
                  return Grads{take_scatter(g, idx, ax, in)};
                });
}

// take_along_axis geometry: the output shape and broadcast strides of a and of the indices.
struct Along {
  Shape out_shape, a_strides, i_strides;
  int64_t axis_stride = 0;
  Along(const Shape& sa, const Shape& si, size_t ax) {
    Shape st = strides_of(sa), sti = strides_of(si);
    axis_stride = st[ax];
    for (size_t d = 0; d < sa.size(); ++d) {
      int64_t n = d == ax ? si[d] : (sa[d] == 1 ? si[d] : sa[d]);
      if (d != ax && sa[d] != si[d] && sa[d] != 1 && si[d] != 1)
        throw std::invalid_argument("take_along_axis: array shape " + to_string(sa) +
                                    " and indices shape " + to_string(si) +
                                    " cannot be broadcast together outside axis " +
                                    str(static_cast<int64_t>(ax)));
      out_shape.push_back(n);
      a_strides.push_back(d == ax || sa[d] == 1 ? 0 : st[d]);
      i_strides.push_back(si[d] == 1 ? 0 : sti[d]);
    }
  }
};

Array take_along_checked(const Array& a, const Array& idx, size_t ax);

Array take_along_scatter(const Array& g, const Array& idx, size_t ax, const Shape& in_shape) {
  Along geo(in_shape, idx.shape(), ax);
  Array out = jnp::zeros(in_shape, DType::float32);
  float* o = out.mutable_data<float>();
  const float* pg = g.data<float>();
  const int32_t* pi = idx.data<int32_t>();
  kernels::for_each_broadcast(
      geo.out_shape, geo.a_strides, geo.i_strides,
      [&](int64_t oi, int64_t ao, int64_t io, int64_t n, int64_t as, int64_t is) {
        for (int64_t k = 0; k < n; ++k)
          o[ao + k * as + pi[io + k * is] * geo.axis_stride] += pg[oi + k];
      });
  if (!needs_grad(g)) return out;
  return record("take_along_axis_scatter", out, {&g},
                [idx, ax](const Array& gg, const Array&, const Need&) {
                  return Grads{take_along_checked(gg, idx, ax)};
                });
}

Array take_along_checked(const Array& a, const Array& idx, size_t ax) {
  Along geo(a.shape(), idx.shape(), ax);
  Array out = Array::empty(geo.out_shape, a.dtype());
  size_t isz = itemsize(a.dtype());
  const char* src = static_cast<const char*>(a.raw());
  char* dst = static_cast<char*>(out.mutable_raw());
  const int32_t* pi = idx.data<int32_t>();
  kernels::for_each_broadcast(
      geo.out_shape, geo.a_strides, geo.i_strides,
      [&](int64_t oi, int64_t ao, int64_t io, int64_t n, int64_t as, int64_t is) {
        for (int64_t k = 0; k < n; ++k)
          std::memcpy(dst + (oi + k) * isz,
                      src + (ao + k * as + pi[io + k * is] * geo.axis_stride) * isz, isz);
      });
  if (!needs_grad(a)) return out;
  return record("take_along_axis", out, {&a},
                [idx, ax, in = a.shape()](const Array& g, const Array&, const Need&) {
                  return Grads{take_along_scatter(g, idx, ax, in)};
                });
}

DType promote(DType a, DType b) {
  if (a == b) return a;
  if (a == DType::float32 || b == DType::float32) return DType::float32;
  if (a == DType::bool_) return b;
  if (b == DType::bool_) return a;
  return DType::int32;
}

Array tri(const Array& a, int64_t k, bool lower) {
  const char* name = lower ? "tril" : "triu";
  if (a.ndim() < 2)
    throw std::invalid_argument(std::string(name) + ": array must be at least 2-D, got shape " +
                                to_string(a.shape()));
  int64_t rows = a.shape()[a.ndim() - 2], cols = a.shape().back();
  int64_t batch = rows * cols != 0 ? a.size() / (rows * cols) : 0;
  size_t isz = itemsize(a.dtype());
  Array out = Array::empty(a.shape(), a.dtype());
  const char* src = static_cast<const char*>(a.raw());
  char* dst = static_cast<char*>(out.mutable_raw());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < rows; ++i) {
      size_t off = static_cast<size_t>((b * rows + i) * cols) * isz;
      // Columns kept: tril j <= i + k, triu j >= i + k.
      int64_t split = std::clamp<int64_t>(lower ? i + k + 1 : i + k, 0, cols);
      size_t head = static_cast<size_t>(split) * isz, all = static_cast<size_t>(cols) * isz;
      if (lower) {
        std::memcpy(dst + off, src + off, head);
        std::memset(dst + off + head, 0, all - head);
      } else {
        std::memset(dst + off, 0, head);
        std::memcpy(dst + off + head, src + off + head, all - head);
      }
    }
  if (!needs_grad(a)) return out;
  return record(name, out, {&a}, [k, lower](const Array& g, const Array&, const Need&) {
    return Grads{tri(g, k, lower)};
  });
}

}  // namespace

// ---- joining and splitting ---------------------------------------------------------------------

// Gradient: each input's cotangent is its slice of g along `axis`.
Array jnp::concatenate(const std::vector<Array>& arrays, int64_t axis) {
  if (arrays.empty())
    throw std::invalid_argument("concatenate: need at least one array to concatenate");
  const Shape& s0 = arrays[0].shape();
  if (s0.empty())
    throw std::invalid_argument("concatenate: zero-dimensional arrays cannot be concatenated");
  size_t ax = normalize_axis(axis, s0.size(), "concatenate");
  Shape out_shape = s0;
  out_shape[ax] = 0;
  DType dtype = arrays[0].dtype();
  bool traced = false;
  for (const Array& a : arrays) {
    const Shape& s = a.shape();
    bool same = s.size() == s0.size();
    for (size_t d = 0; same && d < s.size(); ++d) same = d == ax || s[d] == s0[d];
    if (!same)
      throw std::invalid_argument("concatenate: shapes " + to_string(s0) + " and " + to_string(s) +
                                  " differ outside axis " + str(static_cast<int64_t>(ax)));
    out_shape[ax] += s[ax];
    dtype = promote(dtype, a.dtype());
    traced = traced || a.node();
  }
  if (arrays.size() == 1 && dtype == arrays[0].dtype()) return arrays[0];
  Around r(out_shape, ax);
  size_t isz = itemsize(dtype);
  Array out = Array::empty(out_shape, dtype);
  char* dst = static_cast<char*>(out.mutable_raw());
  size_t out_row = static_cast<size_t>(r.n * r.inner) * isz, at = 0;
  for (const Array& a0 : arrays) {
    Array a = a0.dtype() == dtype ? a0 : jnp::astype(a0, dtype);
    size_t row = static_cast<size_t>(a.shape()[ax] * r.inner) * isz;
    const char* src = static_cast<const char*>(a.raw());
    for (int64_t i = 0; i < r.outer; ++i) std::memcpy(dst + i * out_row + at, src + i * row, row);
    at += row;
  }
  if (!traced || !autodiff::is_recording()) return out;
  std::vector<const Array*> inputs;
  std::vector<int64_t> sizes;
  for (const Array& a : arrays) {
    inputs.push_back(&a);
    sizes.push_back(a.shape()[ax]);
  }
  return record("concatenate", out, std::move(inputs),
                [sizes, ax](const Array& g, const Array&, const Need& need) {
                  Grads r(sizes.size());
                  int64_t start = 0;
                  for (size_t i = 0; i < sizes.size(); ++i) {
                    if (need[i]) r[i] = slice(g, static_cast<int64_t>(ax), start, start + sizes[i]);
                    start += sizes[i];
                  }
                  return r;
                });
}

std::vector<Array> jnp::split(const Array& a, int64_t sections, int64_t axis) {
  if (sections <= 0)
    throw std::invalid_argument("split: number of sections must be positive, got " + str(sections));
  size_t ax = normalize_axis(axis, a.ndim(), "split");
  int64_t n = a.shape()[ax];
  if (n % sections != 0)
    throw std::invalid_argument("split: array of shape " + to_string(a.shape()) +
                                " cannot be split into " + str(sections) +
                                " equal sections along axis " + str(static_cast<int64_t>(ax)));
  std::vector<int64_t> cuts;
  for (int64_t i = 1; i < sections; ++i) cuts.push_back(i * (n / sections));
  return split_at(a, cuts, static_cast<int64_t>(ax));
}

// np.split(a, indices): the parts a[0:i0], a[i0:i1], ..., a[ik:]; each part is a slice, so its
// gradient is the slice's (g padded with zeros), and the engine sums them.
std::vector<Array> jnp::split_at(const Array& a, const std::vector<int64_t>& indices,
                                 int64_t axis) {
  size_t ax = normalize_axis(axis, a.ndim(), "split_at");
  int64_t n = a.shape()[ax];
  std::vector<Array> parts;
  parts.reserve(indices.size() + 1);
  int64_t start = 0;
  for (size_t i = 0; i <= indices.size(); ++i) {
    int64_t stop = i < indices.size() ? indices[i] : n;
    parts.push_back(slice(a, static_cast<int64_t>(ax), start, stop));
    start = stop;
  }
  return parts;
}

Array jnp::stack(const std::vector<Array>& arrays, int64_t axis) {
  if (arrays.empty()) throw std::invalid_argument("stack: need at least one array to stack");
  size_t ax = normalize_axis(axis, arrays[0].ndim() + 1, "stack");
  std::vector<Array> expanded;
  expanded.reserve(arrays.size());
  for (const Array& a : arrays) {
    if (a.shape() != arrays[0].shape())
      throw std::invalid_argument("stack: all input arrays must have the same shape, got " +
                                  to_string(arrays[0].shape()) + " and " + to_string(a.shape()));
    expanded.push_back(expand_dims(a, static_cast<int64_t>(ax)));
  }
  return concatenate(expanded, static_cast<int64_t>(ax));
}

// ---- slicing and indexing ----------------------------------------------------------------------

Array jnp::slice(const Array& a, int64_t axis, int64_t start, int64_t stop, int64_t step) {
  size_t ax = normalize_axis(axis, a.ndim(), "slice");
  Window w = full_window(a.shape());
  w.out_shape[ax] = python_slice(a.shape()[ax], start, stop, step, "slice");
  w.start[ax] = start;
  w.step[ax] = step;
  return slice_window(a, w);
}

Array jnp::slice(const Array& a, const std::vector<Slice>& slices) {
  if (slices.size() > a.ndim())
    throw std::invalid_argument("slice: too many indices for array: array is " +
                                str(static_cast<int64_t>(a.ndim())) + "-dimensional, but " +
                                str(static_cast<int64_t>(slices.size())) + " were indexed");
  Window w = full_window(a.shape());
  for (size_t d = 0; d < slices.size(); ++d) {
    int64_t start = slices[d].start, n = a.shape()[d];
    w.out_shape[d] = python_slice(n, start, slices[d].stop.value_or(n), slices[d].step, "slice");
    w.start[d] = start;
    w.step[d] = slices[d].step;
  }
  return slice_window(a, w);
}

Array jnp::index(const Array& a, int64_t i) {
  if (a.ndim() == 0)
    throw std::invalid_argument(
        "index: too many indices for array: array is 0-dimensional, but 1 were indexed");
  int64_t n = a.shape()[0];
  if (i < -n || i >= n)
    throw std::invalid_argument("index: index " + str(i) +
                                " is out of bounds for axis 0 with size " + str(n));
  if (i < 0) i += n;
  Window w = full_window(a.shape());
  w.out_shape[0] = 1;
  w.start[0] = i;
  Shape rest = a.shape();
  rest.erase(0);
  return reshape(slice_window(a, w), rest);
}

// Gradient: scatter-add of g into zeros shaped like a (repeated indices accumulate).
Array jnp::take(const Array& a, const Array& indices, int64_t axis) {
  size_t ax = normalize_axis(axis, a.ndim(), "take");
  Array idx = checked_indices(indices, a.shape()[ax], ax, "take");
  return take_checked(a, idx, ax);
}

Array jnp::take_along_axis(const Array& a, const Array& indices, int64_t axis) {
  int_indices(indices, "take_along_axis");
  if (indices.ndim() != a.ndim())
    throw std::invalid_argument(
        "take_along_axis: indices must have the same rank as the array, got shapes " +
        to_string(a.shape()) + " and " + to_string(indices.shape()));
  size_t ax = normalize_axis(axis, a.ndim(), "take_along_axis");
  (void)Along(a.shape(), indices.shape(), ax);  // shape check before the index check
  Array idx = checked_indices(indices, a.shape()[ax], ax, "take_along_axis");
  return take_along_checked(a, idx, ax);
}

// jax.nn.one_hot: labels[..., None] == arange(num_classes); out-of-range labels give zero rows.
// No gradient (as JAX: the output is piecewise constant in the labels).
Array jnp::one_hot(const Array& labels, int64_t num_classes, DType dtype) {
  if (num_classes < 0)
    throw std::invalid_argument("one_hot: num_classes must be >= 0, got " + str(num_classes));
  Shape s = labels.shape();
  s.push_back(num_classes);
  Array out = zeros(s, dtype);
  auto v = labels.to_double();
  char* dst = static_cast<char*>(out.mutable_raw());
  size_t isz = itemsize(dtype);
  for (size_t i = 0; i < v.size(); ++i) {
    if (!(v[i] >= 0 && v[i] < static_cast<double>(num_classes) && v[i] == std::floor(v[i])))
      continue;
    char* p = dst + (static_cast<int64_t>(i) * num_classes + static_cast<int64_t>(v[i])) * isz;
    switch (dtype) {
      case DType::float32: *reinterpret_cast<float*>(p) = 1.f; break;
      case DType::int32: *reinterpret_cast<int32_t*>(p) = 1; break;
      case DType::uint32: *reinterpret_cast<uint32_t*>(p) = 1u; break;
      case DType::bool_: *reinterpret_cast<uint8_t*>(p) = 1; break;
    }
  }
  return out;
}

// Gradient of a mask is the same mask applied to g.
Array jnp::tril(const Array& a, int64_t k) { return tri(a, k, true); }
Array jnp::triu(const Array& a, int64_t k) { return tri(a, k, false); }

// ---- ranges ------------------------------------------------------------------------------------

Array jnp::arange(int64_t stop) {
  Array out = Array::empty({std::max<int64_t>(stop, 0)}, DType::int32);
  int32_t* o = out.mutable_data<int32_t>();
  for (int64_t i = 0, n = out.size(); i < n; ++i) o[i] = static_cast<int32_t>(i);
  return out;
}

// As np.arange (which jnp.arange calls): length ceil((stop - start) / step); the first two values
// are start and start + step rounded to dtype, the rest start + i * delta in dtype arithmetic.
Array jnp::arange(double start, double stop, double step, DType dtype) {
  if (step == 0) throw std::invalid_argument("arange: step must be nonzero");
  if (dtype != DType::float32 && dtype != DType::int32)
    throw std::invalid_argument(std::string("arange: dtype must be float32 or int32, got ") +
                                dtype_name(dtype));
  double len = std::ceil((stop - start) / step);
  if (!std::isfinite(len)) throw std::invalid_argument("arange: the length is not finite");
  int64_t n = len > 0 ? static_cast<int64_t>(len) : 0;
  Array out = Array::empty({n}, dtype);
  auto fill = [&](auto* o) {
    using T = std::remove_pointer_t<decltype(o)>;
    if (n > 0) o[0] = static_cast<T>(start);
    if (n > 1) o[1] = static_cast<T>(start + step);
    if (n <= 2) return;
    T first = o[0], delta = o[1] - o[0];
    for (int64_t i = 2; i < n; ++i) o[i] = first + static_cast<T>(i) * delta;
  };
  if (dtype == DType::float32)
    fill(out.mutable_data<float>());
  else
    fill(out.mutable_data<int32_t>());
  return out;
}

}  // namespace flaxpp
