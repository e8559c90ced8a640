#include "nn/linear.hpp"

#include "core/ops.hpp"
#include "core/ops_fused.hpp"

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
