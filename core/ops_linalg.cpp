// matmul (batched, NumPy semantics) on gemm::sgemm, and dot/vdot built on it.

#include <algorithm>

#include "core/gemm.hpp"
#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/primitive.hpp"

namespace flaxpp {

using autodiff::needs_grad;
using autodiff::record;
using namespace prim::authoring;

namespace {

// a (..., m, k) @ b (..., k, n), both rank >= 2, float32.
Array matmul_nd(const Array& a, const Array& b) {
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  int64_t m = sa[sa.size() - 2], k = sa.back(), k2 = sb[sb.size() - 2], n = sb.back();
  if (k != k2)
    throw std::invalid_argument("matmul: contracting dims differ: " + to_string(sa) + " @ " +
                                to_string(sb));
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
      gemm::sgemm(false, false, rows, n, k, 1.f, pa, k, pb, n, 0.f, out.mutable_data<float>(), n);
    return out;
  }
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  Shape full = batch;
  full.push_back(m);
  full.push_back(n);
  Array out = Array::empty(full, DType::float32);
  float* po = out.mutable_data<float>();
  int64_t nb = numel(batch);
  if (numel(bb) == nb && (numel(ba) == nb || numel(ba) == 1)) {
    // b holds every batch matrix in order and a is either the same or one matrix (the spatial
    // product W (n, n) @ x (B, n, d)): one batched call, spread over the pool.
    if (m && n)
      gemm::sgemm_batched(nb, false, false, m, n, k, pa, k, numel(ba) == 1 ? 0 : m * k, pb, n,
                          k * n, po, n, m * n);
    return out;
  }
  // Walk the batch index; offsets into a and b are in matrices.
  Shape sta = kernels::broadcast_strides(ba, batch), stb = kernels::broadcast_strides(bb, batch);
  for (int64_t i = 0; i < nb; ++i) {
    int64_t rem = i, oa = 0, ob = 0;
    for (size_t d = batch.size(); d-- > 0;) {
      int64_t idx = rem % batch[d];
      rem /= batch[d];
      oa += idx * sta[d];
      ob += idx * stb[d];
    }
    if (m && n)
      gemm::sgemm(false, false, m, n, k, 1.f, pa + oa * m * k, k, pb + ob * k * n, n, 0.f,
                  po + i * m * n, n);
  }
  return out;
}

// d(a @ b) = da @ b + a @ db over the perturbed operands (forward mode of every product below;
// jnp::matmul, so a tangent batched by vmap gives one batched product).
Array product_jvp(const Array& a, const Array& b, const Array& ta, const Array& tb, const Need& p) {
  if (p[0] && p[1]) return jnp::matmul(ta, b) + jnp::matmul(a, tb);
  return p[0] ? jnp::matmul(ta, b) : jnp::matmul(a, tb);
}

// matmul_2d(a, b, ta, tb) = op(a) @ op(b) for 2-D float32 operands, op = transpose where the
// flag is set: BLAS reads the operand transposed, so gradients need no transposed copies. Its
// rule uses itself, so grad-of-grad works: for C = op(A) op(B),
//   dA = G op(B)^T (or op(B) G^T when A is read transposed),
//   dB = op(A)^T G (or G^T op(A) when B is read transposed).
Array matmul_2d(const Array& a, const Array& b, bool ta, bool tb) {
  if (prim::batching_depth() > 0 && (prim::batched(a) || prim::batched(b)))  // a rule under vmap
    return jnp::matmul(ta ? jnp::transpose(a) : a, tb ? jnp::transpose(b) : b);
  int64_t m = a.shape()[ta ? 1 : 0], k = a.shape()[ta ? 0 : 1], n = b.shape()[tb ? 0 : 1];
  Array out = Array::empty({m, n}, DType::float32);
  float* po = out.mutable_data<float>();
  if (k == 0)
    std::fill_n(po, m * n, 0.f);
  else if (m && n)
    gemm::sgemm(ta, tb, m, n, k, 1.f, a.data<float>(), a.shape()[1], b.data<float>(), b.shape()[1],
                0.f, po, n);
  if (!needs_grad(a, b)) return out;
  return record(
      "matmul", out, {&a, &b},
      [a, b, ta, tb](const Array& g, const Array&, const Need& need) {
        Grads r(2);
        if (need[0]) r[0] = ta ? matmul_2d(b, g, tb, true) : matmul_2d(g, b, false, !tb);
        if (need[1]) r[1] = tb ? matmul_2d(g, a, true, ta) : matmul_2d(a, g, !ta, false);
        return r;
      },
      autodiff::Keep::nothing,
      [a, b, ta, tb](const Grads& t, const Need& p, const Array&) {
        auto op = [](const Array& m, bool transposed) {
          return transposed ? jnp::transpose(m) : m;
        };
        return product_jvp(op(a, ta), op(b, tb), op(t[0], ta), op(t[1], tb), p);
      });
}

// matmul of operands of rank >= 2 as one table primitive. Eager calls keep the kernels above
// (and their fused rules); vmap binds this block, so that per-example products become one
// batched product, and grad inside vmap differentiates it with the generic rules.
struct Matmul {
  static constexpr Save save = Save::inputs;
  const char* name() const { return "matmul"; }
  Array impl(const Array& a, const Array& b) const {
    if (a.ndim() == 2 && b.ndim() == 2) return matmul_2d(a.detached(), b.detached(), false, false);
    return matmul_nd(a, b);
  }
  Aval abstract_eval(const Aval& a, const Aval& b) const {
    Shape lead = broadcast_shapes(
        Shape(std::span<const int64_t>(a.shape.begin(), a.shape.size() - 2)),
        Shape(std::span<const int64_t>(b.shape.begin(), b.shape.size() - 2)), "matmul");
    lead.push_back(a.shape[a.shape.size() - 2]);
    lead.push_back(b.shape.back());
    return {lead, DType::float32};
  }
  Grads vjp(const Res<2>& r, const Array&, const Array& g, const Need& need) const {
    const Array &a = r.in[0], &b = r.in[1];
    Grads d(2);
    if (need[0]) d[0] = autodiff::unbroadcast(jnp::matmul(g, jnp::swapaxes(b, -1, -2)), a.shape());
    if (need[1]) d[1] = autodiff::unbroadcast(jnp::matmul(jnp::swapaxes(a, -1, -2), g), b.shape());
    return d;
  }
  Array jvp(const Res<2>& r, const Array&, const Tan<2>& t) const {
    return jnp::matmul(t[0], r.in[1]) + jnp::matmul(r.in[0], t[1]);
  }
  // Batch axes first, and ones inserted so that the batched operand's leading (batch) axes line
  // up with the other's under broadcasting: one product over the whole batch.
  Mapped batch(const Vals<2>& x, const Dims<2>& d, int64_t) const {
    size_t rank = std::max(x[0].ndim() - (d[0] != prim::not_mapped),
                           x[1].ndim() - (d[1] != prim::not_mapped));
    Array a = d[0] == prim::not_mapped ? x[0] : prim::batch_first(x[0], d[0], rank);
    Array b = d[1] == prim::not_mapped ? x[1] : prim::batch_first(x[1], d[1], rank);
    return {jnp::matmul(a, b), 0};
  }
};

}  // namespace

Array jnp::matmul(const Array& a, const Array& b) {
  if (!a.is_float() || !b.is_float())
    throw std::invalid_argument(std::string("matmul: float32 operands required, got ") +
                                dtype_name(a.dtype()) + " " + to_string(a.shape()) + " @ " +
                                dtype_name(b.dtype()) + " " + to_string(b.shape()));
  if (a.ndim() == 0 || b.ndim() == 0)
    throw std::invalid_argument("matmul: operands must have rank >= 1, got " +
                                to_string(a.shape()) + " @ " + to_string(b.shape()));
  if (a.ndim() == 1 || b.ndim() == 1) {
    // NumPy: promote 1-D operands to matrices, then drop the added axis.
    if (a.shape().back() != (b.ndim() == 1 ? b.shape()[0] : b.shape()[b.ndim() - 2]))
      throw std::invalid_argument("matmul: contracting dims differ: " + to_string(a.shape()) +
                                  " @ " + to_string(b.shape()));
    Array a2 = a.ndim() == 1 ? reshape(a, {1, a.shape()[0]}) : a;
    Array b2 = b.ndim() == 1 ? reshape(b, {b.shape()[0], 1}) : b;
    Array r = matmul(a2, b2);
    Shape s = r.shape();
    if (b.ndim() == 1) s.erase(s.size() - 1);
    if (a.ndim() == 1) s.erase(s.size() - 1 - (b.ndim() == 1 ? 0 : 1));
    return reshape(r, s);
  }
  if ((prim::batching_depth() > 0 && (prim::batched(a) || prim::batched(b))) ||
      (prim::detail::t_tracing > 0 && (prim::traced(a) || prim::traced(b)))) {
    if (a.shape().back() != b.shape()[b.ndim() - 2])
      throw std::invalid_argument("matmul: contracting dims differ: " + to_string(a.shape()) +
                                  " @ " + to_string(b.shape()));
    return prim::bind(Matmul{}, a, b);
  }
  if (a.ndim() == 2 && b.ndim() == 2) {
    if (a.shape()[1] != b.shape()[0])
      throw std::invalid_argument("matmul: contracting dims differ: " + to_string(a.shape()) +
                                  " @ " + to_string(b.shape()));
    return matmul_2d(a, b, false, false);
  }
  Array out = matmul_nd(a, b);
  if (!needs_grad(a, b)) return out;
  return record(
      "matmul", out, {&a, &b},
      [a, b](const Array& g, const Array&, const Need& need) {
        Grads r(2);
        if (b.ndim() == 2) {
          // A batch of rows times one matrix (a Dense layer): fold the batch into the rows, so each
          // cotangent is one sgemm instead of a batch of products summed afterwards.
          int64_t k = b.shape()[0], n = b.shape()[1], rows = 1;
          for (size_t d = 0; d + 1 < a.ndim(); ++d) rows *= a.shape()[d];
          Array a2 = reshape(a, {rows, k}), g2 = reshape(g, {rows, n});
          if (need[0]) r[0] = reshape(matmul_2d(g2, b, false, true), a.shape());
          if (need[1]) r[1] = matmul_2d(a2, g2, true, false);
          return r;
        }
        if (a.ndim() == 2 && !autodiff::is_recording() && !prim::batched(g)) {
          // One matrix times a batch (the spatial product W (n, n) @ x (B, n, d)), straight on BLAS:
          // dW = sum_i g_i x_i^T accumulated in place (no (B, n, n) intermediate), dx_i = W^T g_i.
          int64_t m = a.shape()[0], k = a.shape()[1], n = b.shape().back(),
                  count = b.size() / std::max<int64_t>(1, k * n);
          const float *pa = a.data<float>(), *pb = b.data<float>(), *pg = g.data<float>();
          if (need[0]) {
            Array da = Array::empty(a.shape(), DType::float32);
            float* pd = da.mutable_data<float>();
            if (count == 0 || n == 0) std::fill_n(pd, m * k, 0.f);
            for (int64_t i = 0; i < count && n; ++i)
              gemm::sgemm(false, true, m, k, n, 1.f, pg + i * m * n, n, pb + i * k * n, n,
                          i ? 1.f : 0.f, pd, k);
            r[0] = da;
          }
          if (need[1]) {
            Array db = Array::empty(b.shape(), DType::float32);
            gemm::sgemm_batched(count, true, false, k, n, m, pa, k, 0, pg, n, m * n,
                                db.mutable_data<float>(), n, k * n);
            r[1] = db;
          }
          return r;
        }
        if (need[0]) r[0] = autodiff::unbroadcast(matmul(g, swapaxes(b, -1, -2)), a.shape());
        if (need[1]) r[1] = autodiff::unbroadcast(matmul(swapaxes(a, -1, -2), g), b.shape());
        return r;
      },
      autodiff::Keep::nothing,
      [a, b](const Grads& t, const Need& p, const Array&) {
        return product_jvp(a, b, t[0], t[1], p);
      });
}

Array jnp::dot(const Array& a, const Array& b) {
  if (a.ndim() > 2 || b.ndim() > 2)
    throw std::invalid_argument("dot: only rank <= 2 operands are supported, got " +
                                to_string(a.shape()) + " and " + to_string(b.shape()));
  if (a.ndim() == 0 || b.ndim() == 0) return a * b;
  return matmul(a, b);
}

Array jnp::vdot(const Array& a, const Array& b) {
  if (a.size() != b.size())
    throw std::invalid_argument("vdot: sizes differ: " + to_string(a.shape()) + " and " +
                                to_string(b.shape()));
  return sum(reshape(a, {a.size()}) * reshape(b, {b.size()}));
}

}  // namespace flaxpp
