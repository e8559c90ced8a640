#include "nn/linear.hpp"

#include "core/ops.hpp"
#include "core/ops_fused.hpp"

#include <algorithm>

namespace flaxpp::nn {

Array Dense::operator()(Scope& s, const Array& x) const {
  if (features <= 0) s.fail("features must be positive, got " + std::to_string(features));
  if (!x.is_float() || x.ndim() == 0)
    s.fail(std::string("expected a float32 input of rank >= 1, got ") + dtype_name(x.dtype()) + " " +
           to_string(x.shape()));
  Array kernel = s.param("kernel", kernel_init, {x.shape().back(), features});
  std::optional<Array> bias;
  if (use_bias) bias = s.param("bias", bias_init, {features});
  return fused::dense(x, kernel, bias);  // = x @ kernel + bias, one pass (core/ops_fused.hpp)
}

namespace {

std::string list_string(const std::vector<int64_t>& v) {
  std::string r = "(";
  for (size_t i = 0; i < v.size(); ++i) r += (i ? ", " : "") + std::to_string(v[i]);
  return r + (v.size() == 1 ? ",)" : ")");
}

// Flax's _normalize_axes: non-negative and sorted; out of range or repeated axes fail.
std::vector<size_t> normalized_axes(Scope& s, const std::vector<int64_t>& axes, const Array& x,
                                    const char* field) {
  std::vector<size_t> r;
  auto nd = static_cast<int64_t>(x.ndim());
  for (int64_t a : axes) {
    if (a < -nd || a >= nd)
      s.fail(std::string(field) + " " + list_string(axes) +
             " is out of range for an input of shape " + to_string(x.shape()));
    r.push_back(static_cast<size_t>(a < 0 ? a + nd : a));
  }
  std::sort(r.begin(), r.end());
  if (std::adjacent_find(r.begin(), r.end()) != r.end())
    s.fail(std::string(field) + " " + list_string(axes) +
           " names an axis twice for an input of shape " + to_string(x.shape()));
  return r;
}

}  // namespace

Array DenseGeneral::operator()(Scope& s, const Array& x) const {
  if (features.empty()) s.fail("features must list at least one output dimension");
  for (int64_t f : features)
    if (f <= 0) s.fail("features must be positive, got " + list_string(features));
  if (!x.is_float())
    s.fail(std::string("expected a float32 input, got ") + dtype_name(x.dtype()) + " " +
           to_string(x.shape()));
  std::vector<size_t> axes = normalized_axes(s, axis, x, "axis");
  std::vector<size_t> batch = normalized_axes(s, batch_dims, x, "batch_dims");
  for (size_t i = 0; i < batch.size(); ++i)
    if (batch[i] != i)
      s.fail("batch_dims " + list_string(batch_dims) +
             " must be consecutive leading dimensions starting from 0");
  for (size_t a : axes)
    if (a < batch.size())
      s.fail("axis " + list_string(axis) + " and batch_dims " + list_string(batch_dims) +
             " overlap");

  Shape batch_shape, contract_shape, free_shape, feature_shape(features);
  std::vector<int64_t> perm;  // x's axes as batch, free, contracted
  for (size_t b : batch)
    batch_shape.push_back(x.shape()[b]), perm.push_back(static_cast<int64_t>(b));
  for (size_t d = batch.size(); d < x.ndim(); ++d)
    if (!std::binary_search(axes.begin(), axes.end(), d))
      free_shape.push_back(x.shape()[d]), perm.push_back(static_cast<int64_t>(d));
  for (size_t a : axes)
    contract_shape.push_back(x.shape()[a]), perm.push_back(static_cast<int64_t>(a));
  int64_t nb = numel(batch_shape), nc = numel(contract_shape), nf = numel(feature_shape);
  int64_t nfree = numel(free_shape);

  Shape kernel_shape = batch_shape;
  for (int64_t d : contract_shape) kernel_shape.push_back(d);
  for (int64_t d : features) kernel_shape.push_back(d);
  // Flax's kernel_init_wrap / bias_init_wrap: the initializer sees the flattened matrix
  // (batch * contracted, features), so its fans are those of a Dense on the flattened input.
  Initializer kinit = [init = kernel_init, nb, nc, nf](random::Key k, const Shape& shape,
                                                       DType dt) {
    return jnp::reshape(init(k, {nb * nc, nf}, dt), shape);
  };
  Array kernel = s.param("kernel", kinit, kernel_shape);
  std::optional<Array> bias;
  if (use_bias) {
    Shape bias_shape = batch_shape;
    for (int64_t d : features) bias_shape.push_back(d);
    Initializer binit = [init = bias_init, nb, nf](random::Key k, const Shape& shape, DType dt) {
      return jnp::reshape(init(k, {nb * nf}, dt), shape);
    };
    bias = s.param("bias", binit, bias_shape);
  }

  bool identity = true;
  for (size_t i = 0; i < perm.size(); ++i)
    identity = identity && perm[i] == static_cast<int64_t>(i);
  Array xt = identity ? x : jnp::transpose(x, perm);
  Array y =
      batch.empty()
          ? jnp::matmul(jnp::reshape(xt, {nfree, nc}), jnp::reshape(kernel, {nc, nf}))
          : jnp::matmul(jnp::reshape(xt, {nb, nfree, nc}), jnp::reshape(kernel, {nb, nc, nf}));
  Shape out_shape = batch_shape;
  for (int64_t d : free_shape) out_shape.push_back(d);
  for (int64_t d : features) out_shape.push_back(d);
  y = jnp::reshape(y, out_shape);
  if (bias) {
    // Bias broadcast over the free axes (size 1 there), per batch index, as Flax's reshape.
    Shape expanded = batch_shape;
    for (size_t i = 0; i < free_shape.size(); ++i) expanded.push_back(1);
    for (int64_t d : features) expanded.push_back(d);
    y = y + jnp::reshape(*bias, expanded);
  }
  return y;
}

Array Embed::embedding(Scope& s) const {
  if (num_embeddings <= 0 || features <= 0)
    s.fail("num_embeddings and features must be positive, got " + std::to_string(num_embeddings) + " and " +
           std::to_string(features));
  return s.param("embedding", embedding_init, {num_embeddings, features});
}

Array Embed::operator()(Scope& s, const Array& ids) const {
  Array table = embedding(s);
  if (ids.dtype() != DType::int32 && ids.dtype() != DType::uint32)
    s.fail(std::string("token ids must be integers (int32), got ") + dtype_name(ids.dtype()) + " " +
           to_string(ids.shape()));
  Array idx = jnp::astype(ids, DType::int32);
  const int32_t* p = idx.data<int32_t>();
  for (int64_t i = 0; i < idx.size(); ++i)
    if (p[i] < -num_embeddings || p[i] >= num_embeddings)
      s.fail("token id " + std::to_string(p[i]) + " at flat position " + std::to_string(i) +
             " is out of range for num_embeddings = " + std::to_string(num_embeddings) +
             " (valid: [-" + std::to_string(num_embeddings) + ", " + std::to_string(num_embeddings) + "))");
  return jnp::take(table, idx, 0);
}

Array Embed::attend(Scope& s, const Array& query) const {
  Array table = embedding(s);
  if (!query.is_float() || query.ndim() == 0 || query.shape().back() != features)
    s.fail("attend expects a float32 query with last axis " + std::to_string(features) + ", got " +
           dtype_name(query.dtype()) + " " + to_string(query.shape()));
  return jnp::matmul(query, jnp::transpose(table));
}

}  // namespace flaxpp::nn
