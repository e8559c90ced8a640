// matmul (batched, NumPy semantics) on OpenBLAS sgemm, and dot/vdot built on it.
#include <cblas.h>

#include <algorithm>

#include "core/autodiff.hpp"
#include "core/kernels.hpp"
#include "core/ops.hpp"

namespace flaxpp {

using autodiff::needs_grad;
using autodiff::record;
using Need = std::vector<bool>;
using Grads = std::vector<Array>;

namespace {

// a (..., m, k) @ b (..., k, n), both rank >= 2, float32.
Array matmul_nd(const Array& a, const Array& b) {
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  int64_t m = sa[sa.size() - 2], k = sa.back(), k2 = sb[sb.size() - 2], n = sb.back();
  if (k != k2)
    throw std::invalid_argument("matmul: contracting dims differ: " + to_string(sa) + " @ " + to_string(sb));
  Shape ba(std::span<const int64_t>(sa.begin(), sa.size() - 2));
  Shape bb(std::span<const int64_t>(sb.begin(), sb.size() - 2));
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  if (bb.empty() || numel(bb) == 1) {
    // b is one matrix: fold a's batch axes into its rows, one sgemm.
    Shape out_shape = sb.size() > 2 ? broadcast_shapes(ba, bb, "matmul") : ba;
    int64_t rows = numel(ba) * m;
    Shape full = out_shape;
    full.push_back(m);
    full.push_back(n);
    Array out = Array::empty(full, DType::float32);
    if (rows && n)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n, k, 1.f, pa, k, pb, n, 0.f,
                  out.mutable_data<float>(), n);
    return out;
  }
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  Shape full = batch;
  full.push_back(m);
  full.push_back(n);
  Array out = Array::empty(full, DType::float32);
  float* po = out.mutable_data<float>();
  Shape sta = kernels::broadcast_strides(ba, batch), stb = kernels::broadcast_strides(bb, batch);
  int64_t nb = numel(batch);
  // Walk the batch index; offsets into a and b are in matrices.
  for (int64_t i = 0; i < nb; ++i) {
    int64_t rem = i, oa = 0, ob = 0;
    for (size_t d = batch.size(); d-- > 0;) {
      int64_t idx = rem % batch[d];
      rem /= batch[d];
      oa += idx * sta[d];
      ob += idx * stb[d];
    }
    if (m && n)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.f, pa + oa * m * k, k,
                  pb + ob * k * n, n, 0.f, po + i * m * n, n);
  }
  return out;
}

// op(a) @ op(b) for 2-D float32 operands, op = transpose where the flag is set: BLAS reads the
// operand transposed, so gradients need no transposed copies. Its rule uses itself, so
// grad-of-grad works: for C = op(A) op(B),
//   dA = G op(B)^T (or op(B) G^T when A is read transposed),
//   dB = op(A)^T G (or G^T op(A) when B is read transposed).
Array mm2d(const Array& a, const Array& b, bool ta, bool tb) {
  int64_t m = a.shape()[ta ? 1 : 0], k = a.shape()[ta ? 0 : 1], n = b.shape()[tb ? 0 : 1];
  Array out = Array::empty({m, n}, DType::float32);
  float* po = out.mutable_data<float>();
  if (k == 0)
    std::fill_n(po, m * n, 0.f);
  else if (m && n)
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, 1.f, a.data<float>(), a.shape()[1], b.data<float>(), b.shape()[1], 0.f, po, n);
  if (!needs_grad(a, b)) return out;
  return record("matmul", out, {&a, &b},
                [a, b, ta, tb](const Array& g, const Array&, const Need& need) {
                  Grads r(2);
                  if (need[0]) r[0] = ta ? mm2d(b, g, tb, true) : mm2d(g, b, false, !tb);
                  if (need[1]) r[1] = tb ? mm2d(g, a, true, ta) : mm2d(a, g, !ta, false);
                  return r;
                });
}

}  // namespace

Array jnp::matmul(const Array& a, const Array& b) {
  if (!a.is_float() || !b.is_float())
    throw std::invalid_argument(std::string("matmul: float32 operands required, got ") + dtype_name(a.dtype()) +
                                " " + to_string(a.shape()) + " @ " + dtype_name(b.dtype()) + " " + to_string(b.shape()));
  if (a.ndim() == 0 || b.ndim() == 0)
    throw std::invalid_argument("matmul: operands must have rank >= 1, got " + to_string(a.shape()) + " @ " + to_string(b.shape()));
  if (a.ndim() == 1 || b.ndim() == 1) {
    // NumPy: promote 1-D operands to matrices, then drop the added axis.
    if (a.shape().back() != (b.ndim() == 1 ? b.shape()[0] : b.shape()[b.ndim() - 2]))
      throw std::invalid_argument("matmul: contracting dims differ: " + to_string(a.shape()) + " @ " + to_string(b.shape()));
    Array a2 = a.ndim() == 1 ? reshape(a, {1, a.shape()[0]}) : a;
    Array b2 = b.ndim() == 1 ? reshape(b, {b.shape()[0], 1}) : b;
    Array r = matmul(a2, b2);
    Shape s = r.shape();
    if (b.ndim() == 1) s.erase(s.size() - 1);
    if (a.ndim() == 1) s.erase(s.size() - 1 - (b.ndim() == 1 ? 0 : 1));
    return reshape(r, s);
  }
  if (a.ndim() == 2 && b.ndim() == 2) {
    if (a.shape()[1] != b.shape()[0])
      throw std::invalid_argument("matmul: contracting dims differ: " + to_string(a.shape()) +
                                  " @ " + to_string(b.shape()));
    return mm2d(a, b, false, false);
  }
  Array out = matmul_nd(a, b);
  if (!needs_grad(a, b)) return out;
  return record("matmul", out, {&a, &b}, [a, b](const Array& g, const Array&, const Need& need) {
    Grads r(2);
    if (b.ndim() == 2) {
      // A batch of rows times one matrix (a Dense layer): fold the batch into the rows, so each
      // cotangent is one sgemm instead of a batch of products summed afterwards.
      int64_t k = b.shape()[0], n = b.shape()[1], rows = 1;
      for (size_t d = 0; d + 1 < a.ndim(); ++d) rows *= a.shape()[d];
      Array a2 = reshape(a, {rows, k}), g2 = reshape(g, {rows, n});
      if (need[0]) r[0] = reshape(mm2d(g2, b, false, true), a.shape());
      if (need[1]) r[1] = mm2d(a2, g2, true, false);
      return r;
    }
    if (need[0]) r[0] = autodiff::unbroadcast(matmul(g, swapaxes(b, -1, -2)), a.shape());
    if (need[1]) r[1] = autodiff::unbroadcast(matmul(swapaxes(a, -1, -2), g), b.shape());
    return r;
  });
}

Array jnp::dot(const Array& a, const Array& b) {
  if (a.ndim() > 2 || b.ndim() > 2)
    throw std::invalid_argument("dot: only rank <= 2 operands are supported, got " + to_string(a.shape()) + " and " + to_string(b.shape()));
  if (a.ndim() == 0 || b.ndim() == 0) return a * b;
  return matmul(a, b);
}

Array jnp::vdot(const Array& a, const Array& b) {
  if (a.size() != b.size())
    throw std::invalid_argument("vdot: sizes differ: " + to_string(a.shape()) + " and " + to_string(b.shape()));
  return sum(reshape(a, {a.size()}) * reshape(b, {b.size()}));
}

}  // namespace flaxpp
