// jax.numpy-style primitives on flaxpp::Array, all differentiable where JAX's are.
//
//   using namespace flaxpp;
//   Array x = Array::matrix({{1, 2}, {3, 4}});
//   Array y = jnp::exp(x) + 1.f;                     // NumPy broadcasting
//   Array s = jnp::sum(x, {0}, /*keepdims=*/true);    // (1,2)
//   Array z = jnp::matmul(x, jnp::transpose(x));      // BLAS sgemm, batched over leading axes
//
// Conventions (as jax.numpy):
// - Binary ops broadcast with NumPy rules; float32 with int32 promotes to float32, bool to the
//   other operand's type. Mismatches throw std::invalid_argument naming the op and both shapes,
//   e.g. "matmul: contracting dims differ: (2,3) @ (4,5)".
// - Axes may be negative. Reductions take a list of axes ({} = all axes) and `keepdims`.
// - Comparisons return bool arrays and have no gradient; argmax returns int32.
// - Gradients: each primitive's rule sits next to its forward kernel (ops_*.cpp) and is written
//   with these same primitives, so grad-of-grad works. At kinks we follow JAX: d|x|/dx = sign(x)
//   (0 at 0), maximum/minimum split the gradient evenly on ties, d sqrt at 0 is inf.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "array.hpp"

namespace flaxpp {

using Axes = std::vector<int64_t>;

// Arithmetic operators (broadcasting). Scalars convert implicitly: x * 2.f, 1.f - x.
Array operator+(const Array& a, const Array& b);
Array operator-(const Array& a, const Array& b);
Array operator*(const Array& a, const Array& b);
Array operator/(const Array& a, const Array& b);
Array operator-(const Array& a);

namespace jnp {

// ---- creation ----
Array zeros(const Shape& shape, DType dtype = DType::float32);
Array ones(const Shape& shape, DType dtype = DType::float32);
Array full(const Shape& shape, float value);
Array full(const Shape& shape, int32_t value);
Array zeros_like(const Array& a);
Array ones_like(const Array& a);
Array arange(int64_t stop);  // int32 [0, stop)
Array arange(double start, double stop, double step = 1.0, DType dtype = DType::float32);
Array astype(const Array& a, DType dtype);  // differentiable float->float

// ---- elementwise ----
Array add(const Array& a, const Array& b);
Array subtract(const Array& a, const Array& b);
Array multiply(const Array& a, const Array& b);
Array divide(const Array& a, const Array& b);
Array negative(const Array& a);
Array power(const Array& a, const Array& b);
Array exp(const Array& a);
Array log(const Array& a);
Array log1p(const Array& a);
Array expm1(const Array& a);
Array tanh(const Array& a);
Array sqrt(const Array& a);
Array rsqrt(const Array& a);
Array erf(const Array& a);
Array abs(const Array& a);
Array sign(const Array& a);
Array maximum(const Array& a, const Array& b);
Array minimum(const Array& a, const Array& b);
Array where(const Array& cond, const Array& a, const Array& b);
Array equal(const Array& a, const Array& b);
Array not_equal(const Array& a, const Array& b);
Array less(const Array& a, const Array& b);
Array less_equal(const Array& a, const Array& b);
Array greater(const Array& a, const Array& b);
Array greater_equal(const Array& a, const Array& b);
Array logical_not(const Array& a);
Array clip(const Array& a, float lo, float hi);
Array square(const Array& a);

// ---- reductions ----
Array sum(const Array& a, const Axes& axes = {}, bool keepdims = false);
Array mean(const Array& a, const Axes& axes = {}, bool keepdims = false);
Array max(const Array& a, const Axes& axes = {}, bool keepdims = false);
Array min(const Array& a, const Axes& axes = {}, bool keepdims = false);
Array var(const Array& a, const Axes& axes = {}, bool keepdims = false);
Array argmax(const Array& a, int64_t axis, bool keepdims = false);
Array logsumexp(const Array& a, const Axes& axes = {}, bool keepdims = false);

// ---- linear algebra ----
// NumPy matmul: 1-D operands are promoted and the added axis removed; leading (batch) axes
// broadcast. float32 only, computed with cblas_sgemm.
Array matmul(const Array& a, const Array& b);
Array dot(const Array& a, const Array& b);   // = matmul for rank <= 2
Array vdot(const Array& a, const Array& b);  // sum(a * b) over all elements, a scalar

// ---- shapes and indexing ----
Array reshape(const Array& a, const Shape& shape);       // one dimension may be -1
Array transpose(const Array& a, const Axes& perm = {});  // {} reverses the axes
Array swapaxes(const Array& a, int64_t axis1, int64_t axis2);
Array expand_dims(const Array& a, int64_t axis);
Array squeeze(const Array& a, const Axes& axes = {});
Array broadcast_to(const Array& a, const Shape& shape);
Array concatenate(const std::vector<Array>& arrays, int64_t axis = 0);
std::vector<Array> split(const Array& a, int64_t sections, int64_t axis = 0);  // equal parts
std::vector<Array> split_at(const Array& a, const std::vector<int64_t>& indices, int64_t axis = 0);
Array stack(const std::vector<Array>& arrays, int64_t axis = 0);
// Basic slicing along one axis: a[..., start:stop:step, ...] (negative start/stop count from
// the end, as Python; step > 0).
Array slice(const Array& a, int64_t axis, int64_t start, int64_t stop, int64_t step = 1);
// Basic slicing over the leading axes: a[s0, s1, ...]. Each entry is {start, stop, step};
// std::nullopt for stop means "to the end".
struct Slice {
  int64_t start = 0;
  std::optional<int64_t> stop = std::nullopt;
  int64_t step = 1;
};
Array slice(const Array& a, const std::vector<Slice>& slices);
// Integer indexing on axis 0 (a[i]), removing that axis; negative i counts from the end.
Array index(const Array& a, int64_t i);
// jnp.take(a, indices, axis): gather along `axis`; indices int32 of any shape; negative indices
// in [-n, 0) wrap; others out of range throw naming the bad index.
Array take(const Array& a, const Array& indices, int64_t axis = 0);
// jnp.take_along_axis(a, indices, axis): indices broadcast against a except on `axis`.
Array take_along_axis(const Array& a, const Array& indices, int64_t axis);
Array one_hot(const Array& labels, int64_t num_classes, DType dtype = DType::float32);
Array tril(const Array& a, int64_t k = 0);
Array triu(const Array& a, int64_t k = 0);

// ---- neural-net helpers (jax.nn), numerically stable ----
Array softmax(const Array& a, int64_t axis = -1);
Array log_softmax(const Array& a, int64_t axis = -1);

// jax.lax.stop_gradient: same values, no gradient flows back.
Array stop_gradient(const Array& a);

}  // namespace jnp

namespace lax {
// jax.lax.logistic, 1 / (1 + exp(-x)) (jax.nn.sigmoid): a primitive of its own, whose rule
// s (1 - s) stays finite where exp(-x) overflows.
Array logistic(const Array& x);
}  // namespace lax
}  // namespace flaxpp
