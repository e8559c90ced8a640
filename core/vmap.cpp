// vmap's plumbing: wrapping batched values, moving batch axes, and the vmap boundary.
#include "core/vmap.hpp"

#include <numeric>

#include "core/ops.hpp"
#include "core/primitive.hpp"

namespace flaxpp {

namespace prim {

namespace {
// Carries a batch and nothing else: never differentiated itself (the tape lives on `value`).
struct BatchNode final : autodiff::Node {
  BatchNode() { tape = false; }
  Grads vjp(const Array&, const Array&, const Need&) override {
    throw std::logic_error("vmap: a batch-only node was differentiated");
  }
};

Shape without_axis(const Shape& s, int d) {
  Shape r;
  for (size_t i = 0; i < s.size(); ++i)
    if (static_cast<int>(i) != d) r.push_back(s[i]);
  return r;
}
}  // namespace

Array wrap(Array value, int bdim, int level, int64_t size) {
  // The placeholder's buffer is never read (kernels see `value`); it gives the per-example
  // shape and dtype that f's code observes.
  Array out = Array::empty(without_axis(value.shape(), bdim), value.dtype());
  auto node = std::make_shared<BatchNode>();
  node->op = "vmap";
  node->shape = out.shape();
  node->batch = std::make_shared<BatchPayload>(BatchPayload{std::move(value), bdim, level, size});
  out.set_node(std::move(node));
  return out;
}

Array untaped(const Array& a) {
  const BatchPayload* b = batched(a);
  if (!b) return a.detached();
  Array out = a.detached();
  auto node = std::make_shared<BatchNode>();
  node->op = "vmap";
  node->shape = a.shape();
  node->batch = a.node()->batch;
  out.set_node(std::move(node));
  return out;
}

Array moveaxis(const Array& x, int64_t from, int64_t to) {
  auto nd = static_cast<int64_t>(x.ndim());
  from = static_cast<int64_t>(normalize_axis(from, x.ndim(), "vmap"));
  to = static_cast<int64_t>(normalize_axis(to, x.ndim(), "vmap"));
  if (from == to) return x;
  Axes perm;
  for (int64_t i = 0; i < nd; ++i)
    if (i != from) perm.push_back(i);
  perm.insert(perm.begin() + to, from);
  return jnp::transpose(x, perm);
}

Array batch_first(const Array& x, int d, size_t rank) {
  Array y = moveaxis(x, d, 0);
  size_t have = y.ndim() - 1;
  if (have >= rank) return y;
  Shape s = y.shape();
  for (size_t k = have; k < rank; ++k) s.insert(1, 1);
  return jnp::reshape(y, s);
}

}  // namespace prim

namespace vmap_detail {

Level::Level() : level_(++prim::detail::t_batching_depth) {}
Level::~Level() { --prim::detail::t_batching_depth; }

int64_t mapped_size(const Array& x, int64_t axis) {
  if (x.ndim() == 0)
    throw std::invalid_argument("vmap: cannot map axis " + std::to_string(axis) +
                                " of a scalar (shape ())");
  return x.shape()[normalize_axis(axis, x.ndim(), "vmap")];
}

Array map_leaf(const Array& x, int64_t axis, int level, int64_t size) {
  return prim::wrap(x, static_cast<int>(normalize_axis(axis, x.ndim(), "vmap")), level, size);
}

Array unmap_leaf(const Array& y, std::optional<int64_t> axis, int level, int64_t size) {
  const prim::BatchPayload* b = prim::batched(y);
  bool mapped = b && b->level == level;
  if (!axis) {
    if (mapped) throw std::invalid_argument("vmap: out_axes is none for an output that is mapped");
    return y;
  }
  int64_t nd = static_cast<int64_t>(y.ndim()) + 1;
  int64_t to = *axis < 0 ? *axis + nd : *axis;
  if (to < 0 || to >= nd)
    throw std::invalid_argument("vmap: out_axes " + std::to_string(*axis) +
                                " is out of range for an output of rank " +
                                std::to_string(y.ndim()));
  if (mapped) return prim::moveaxis(b->value, b->bdim, to);
  // Unmapped (it does not depend on a mapped input): broadcast along the new axis.
  Shape s = y.shape();
  s.insert(static_cast<size_t>(to), size);
  return jnp::broadcast_to(jnp::expand_dims(y, to), s);
}

void inconsistent(const std::vector<std::pair<int64_t, int64_t>>& sizes) {
  std::string msg = "vmap got inconsistent sizes for array axes to be mapped:";
  for (size_t i = 0; i < sizes.size(); ++i)
    msg += (i ? ", " : " ") + std::string("axis ") + std::to_string(sizes[i].first) + " of size " +
           std::to_string(sizes[i].second);
  throw std::invalid_argument(msg);
}

}  // namespace vmap_detail
}  // namespace flaxpp
