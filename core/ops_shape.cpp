// Shape primitives: reshape, transpose, broadcast_to (with rules) and the helpers built on them.
#include <numeric>

#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/primitive.hpp"

namespace flaxpp {

using autodiff::needs_grad;
using autodiff::record;

Array jnp::reshape(const Array& a, const Shape& shape0) {
  Shape shape = shape0;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) throw std::invalid_argument("reshape: can only specify one unknown dimension in " + to_string(shape0));
      infer = static_cast<int64_t>(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || a.size() % known != 0)
      throw std::invalid_argument("reshape: cannot reshape array of shape " + to_string(a.shape()) + " into shape " + to_string(shape0));
    shape[static_cast<size_t>(infer)] = a.size() / known;
  }
  if (shape == a.shape()) return a;
  Array out = a.reshaped(shape);
  if (!needs_grad(a)) return out;
  return record("reshape", out, {&a}, [in = a.shape()](const Array& g, const Array&, const Need&) {
    return Grads{jnp::reshape(g, in)};
  });
}

Array jnp::transpose(const Array& a, const Axes& perm0) {
  size_t nd = a.ndim();
  std::vector<size_t> perm(nd);
  if (perm0.empty()) {
    for (size_t i = 0; i < nd; ++i) perm[i] = nd - 1 - i;
  } else {
    if (perm0.size() != nd)
      throw std::invalid_argument("transpose: permutation of length " + std::to_string(perm0.size()) +
                                  " for an array of shape " + to_string(a.shape()));
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
  if (!needs_grad(a)) return out;
  Axes inverse(nd);
  for (size_t i = 0; i < nd; ++i) inverse[perm[i]] = static_cast<int64_t>(i);
  return record("transpose", out, {&a}, [inverse](const Array& g, const Array&, const Need&) {
    return Grads{jnp::transpose(g, inverse)};
  });
}

Array jnp::swapaxes(const Array& a, int64_t axis1, int64_t axis2) {
  size_t i = normalize_axis(axis1, a.ndim(), "swapaxes"), j = normalize_axis(axis2, a.ndim(), "swapaxes");
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
        throw std::invalid_argument("squeeze: cannot select axis " + std::to_string(ax) + " of shape " +
                                    to_string(a.shape()) + ": its size is not 1");
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
    throw std::invalid_argument("broadcast_to: cannot broadcast shape " + to_string(a.shape()) + " to " + to_string(shape));
  Array out = Array::empty(shape, a.dtype());
  switch (itemsize(a.dtype())) {
    case 4: kernels::broadcast_copy(static_cast<const uint32_t*>(a.raw()), a.shape(), static_cast<uint32_t*>(out.mutable_raw()), shape); break;
    default: kernels::broadcast_copy(static_cast<const uint8_t*>(a.raw()), a.shape(), static_cast<uint8_t*>(out.mutable_raw()), shape); break;
  }
  if (!needs_grad(a)) return out;
  return record("broadcast_to", out, {&a}, [in = a.shape()](const Array& g, const Array&, const Need&) {
    return Grads{autodiff::unbroadcast(g, in)};
  });
}

}  // namespace flaxpp
