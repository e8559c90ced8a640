// Shape primitives: reshape, transpose, broadcast_to (one block each in the table below) and
// the helpers built on them.
#include <numeric>

#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/primitive.hpp"

namespace flaxpp {

using namespace prim::authoring;

namespace {

// ============================== the shape primitives ==========================================

// reshape to `shape` (same element count; -1 already resolved): a view, no copy.
struct Reshape {
  Shape shape;
  static constexpr Save save = Save::nothing;
  const char* name() const { return "reshape"; }
  std::string params() const { return "new_sizes=" + prim::tuple_str(shape); }
  Array impl(const Array& a) const { return a.reshaped(shape); }
  Aval abstract_eval(const Aval& a) const { return {shape, a.dtype}; }
  Grads vjp(const Res<1>& r, const Array&, const Array& g, const Need&) const {
    return {jnp::reshape(g, r.shape[0])};
  }
  Array jvp(const Res<1>&, const Array&, const Tan<1>& t) const {
    return jnp::reshape(t[0], shape);
  }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t size) const {
    Shape s = shape;
    s.insert(0, size);
    return {jnp::reshape(prim::moveaxis(x[0], d[0], 0), s), 0};
  }
};

// transpose by `perm` (normalised, not the identity): out.shape[i] = a.shape[perm[i]].
struct Transpose {
  Axes perm;
  static constexpr Save save = Save::nothing;
  const char* name() const { return "transpose"; }
  std::string params() const { return "permutation=" + prim::tuple_str(perm); }
  Array impl(const Array& a) const;
  Aval abstract_eval(const Aval& a) const {
    Shape s;
    for (int64_t p : perm) s.push_back(a.shape[static_cast<size_t>(p)]);
    return {s, a.dtype};
  }
  Axes inverse() const {
    Axes inv(perm.size());
    for (size_t i = 0; i < perm.size(); ++i)
      inv[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
    return inv;
  }
  Grads vjp(const Res<1>&, const Array&, const Array& g, const Need&) const {
    return {jnp::transpose(g, inverse())};
  }
  Array jvp(const Res<1>&, const Array&, const Tan<1>& t) const {
    return jnp::transpose(t[0], perm);
  }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t) const {
    Axes p{0};
    for (int64_t q : perm) p.push_back(q + 1);
    return {jnp::transpose(prim::moveaxis(x[0], d[0], 0), p), 0};
  }
};

// broadcast_to `shape` (NumPy rules, checked): a copy.
struct BroadcastTo {
  Shape shape;
  static constexpr Save save = Save::nothing;
  const char* name() const { return "broadcast_to"; }
  std::string params() const { return "shape=" + prim::tuple_str(shape); }
  Array impl(const Array& a) const {
    Array out = Array::empty(shape, a.dtype(), "broadcast_to");
    switch (itemsize(a.dtype())) {
      case 4:
        kernels::broadcast_copy(static_cast<const uint32_t*>(a.raw()), a.shape(),
                                static_cast<uint32_t*>(out.mutable_raw()), shape);
        break;
      default:
        kernels::broadcast_copy(static_cast<const uint8_t*>(a.raw()), a.shape(),
                                static_cast<uint8_t*>(out.mutable_raw()), shape);
        break;
    }
    return out;
  }
  Aval abstract_eval(const Aval& a) const { return {shape, a.dtype}; }
  Grads vjp(const Res<1>& r, const Array&, const Array& g, const Need&) const {
    return {autodiff::unbroadcast(g, r.shape[0])};
  }
  Array jvp(const Res<1>&, const Array&, const Tan<1>& t) const {
    return jnp::broadcast_to(t[0], shape);
  }
  Mapped batch(const Vals<1>& x, const Dims<1>& d, int64_t size) const {
    Shape s = shape;
    s.insert(0, size);
    return {jnp::broadcast_to(prim::batch_first(x[0], d[0], shape.size()), s), 0};
  }
};

Array Transpose::impl(const Array& a) const {
  size_t nd = a.ndim();
  std::vector<size_t> perm(this->perm.begin(), this->perm.end());
  Shape out_shape, in_strides = strides_of(a.shape()), src_strides;
  for (size_t i = 0; i < nd; ++i) {
    out_shape.push_back(a.shape()[perm[i]]);
    src_strides.push_back(in_strides[perm[i]]);
  }
  Array out = Array::empty(out_shape, a.dtype());
  size_t isz = itemsize(a.dtype());
  const char* src = static_cast<const char*>(a.raw());
  char* dst = static_cast<char*>(out.mutable_raw());
  kernels::for_each_broadcast(out_shape, src_strides, src_strides,
                              [&](int64_t o, int64_t so, int64_t, int64_t n, int64_t ss, int64_t) {
                                if (isz == 4) {
                                  auto* d = reinterpret_cast<uint32_t*>(dst) + o;
                                  auto* s = reinterpret_cast<const uint32_t*>(src) + so;
                                  for (int64_t i = 0; i < n; ++i) d[i] = s[i * ss];
                                } else {
                                  for (int64_t i = 0; i < n; ++i) dst[o + i] = src[so + i * ss];
                                }
                              });
  return out;
}

}  // namespace

Array jnp::reshape(const Array& a, const Shape& shape0) {
  Shape shape = shape0;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0)
        throw std::invalid_argument("reshape: can only specify one unknown dimension in " +
                                    to_string(shape0));
      infer = static_cast<int64_t>(i);
    } else if (shape[i] < 0) {
      throw std::invalid_argument("reshape: negative dimension " + std::to_string(shape[i]) +
                                  " in shape " + to_string(shape0) +
                                  " (only a single -1 is allowed, for the dimension to infer)");
    } else {
      known = checked_mul(known, shape[i], "reshape", "the product of the dimensions");
    }
  }
  if (infer >= 0) {
    if (known == 0 || a.size() % known != 0)
      throw std::invalid_argument("reshape: cannot reshape array of shape " + to_string(a.shape()) +
                                  " into shape " + to_string(shape0));
    shape[static_cast<size_t>(infer)] = a.size() / known;
  }
  if (shape == a.shape()) return a;
  if (a.size() != numel(shape)) (void)a.reshaped(shape);  // throws the size mismatch
  return bind(Reshape{shape}, a);
}

Array jnp::transpose(const Array& a, const Axes& perm0) {
  size_t nd = a.ndim();
  std::vector<size_t> perm(nd);
  if (perm0.empty()) {
    for (size_t i = 0; i < nd; ++i) perm[i] = nd - 1 - i;
  } else {
    if (perm0.size() != nd)
      throw std::invalid_argument("transpose: permutation of length " +
                                  std::to_string(perm0.size()) + " for an array of shape " +
                                  to_string(a.shape()));
    std::vector<bool> seen(nd);
    for (size_t i = 0; i < nd; ++i) {
      perm[i] = normalize_axis(perm0[i], nd, "transpose");
      if (seen[perm[i]]) throw std::invalid_argument("transpose: repeated axis in permutation");
      seen[perm[i]] = true;
    }
  }
  bool identity = true;
  for (size_t i = 0; i < nd; ++i) identity = identity && perm[i] == i;
  if (identity) return a;
  Axes p(perm.begin(), perm.end());
  return bind(Transpose{p}, a);
}

Array jnp::swapaxes(const Array& a, int64_t axis1, int64_t axis2) {
  size_t i = normalize_axis(axis1, a.ndim(), "swapaxes"),
         j = normalize_axis(axis2, a.ndim(), "swapaxes");
  Axes perm(a.ndim());
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[i], perm[j]);
  return transpose(a, perm);
}

Array jnp::expand_dims(const Array& a, int64_t axis) {
  size_t ax = normalize_axis(axis, a.ndim() + 1, "expand_dims");
  Shape s = a.shape();
  s.insert(ax, 1);
  return reshape(a, s);
}

Array jnp::squeeze(const Array& a, const Axes& axes) {
  Shape s;
  std::vector<bool> drop(a.ndim(), false);
  if (axes.empty()) {
    for (size_t i = 0; i < a.ndim(); ++i) drop[i] = a.shape()[i] == 1;
  } else {
    for (int64_t ax : axes) {
      size_t i = normalize_axis(ax, a.ndim(), "squeeze");
      if (a.shape()[i] != 1)
        throw std::invalid_argument("squeeze: cannot select axis " + std::to_string(ax) +
                                    " of shape " + to_string(a.shape()) + ": its size is not 1");
      drop[i] = true;
    }
  }
  for (size_t i = 0; i < a.ndim(); ++i)
    if (!drop[i]) s.push_back(a.shape()[i]);
  return reshape(a, s);
}

Array jnp::broadcast_to(const Array& a, const Shape& shape) {
  if (a.shape() == shape) return a;
  Shape b = broadcast_shapes(a.shape(), shape, "broadcast_to");
  if (b != shape)
    throw std::invalid_argument("broadcast_to: cannot broadcast shape " + to_string(a.shape()) +
                                " to " + to_string(shape));
  return bind(BroadcastTo{shape}, a);
}

}  // namespace flaxpp
