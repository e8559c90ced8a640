#include "nn/linear.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "core/ops.hpp"
#include "core/ops_fused.hpp"

namespace flaxpp::nn {

Array Dense::operator()(Scope& s, const Array& x) const {
  if (features <= 0) s.fail("features must be positive, got " + std::to_string(features));
  if (!x.is_float() || x.ndim() == 0)
    s.fail(std::string("expected a float32 input of rank >= 1, got ") + dtype_name(x.dtype()) +
           " " + to_string(x.shape()));
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

// ---- einsum and Einsum ------------------------------------------------------------------------

Array einsum(const std::string& equation, const Array& a, const Array& b) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument("einsum '" + equation + "' on " + to_string(a.shape()) + " and " +
                                to_string(b.shape()) + ": " + why);
  };
  std::string eq;
  for (char c : equation)
    if (c != ' ') eq += c;
  size_t arrow = eq.find("->");
  if (arrow == std::string::npos) fail("the equation must be explicit and include \"->\"");
  std::string ins = eq.substr(0, arrow), out = eq.substr(arrow + 2);
  size_t comma = ins.find(',');
  if (comma == std::string::npos || ins.find(',', comma + 1) != std::string::npos)
    fail("the equation must have exactly two operands");
  std::string terms[2] = {ins.substr(0, comma), ins.substr(comma + 1)};
  const Array* ops[2] = {&a, &b};
  // "..." becomes placeholder labels \1, \2, ... for the extra leading axes, right-aligned
  // across the operands as NumPy broadcasting aligns them.
  int64_t n_ell[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    size_t pos = terms[i].find("...");
    if (pos == std::string::npos) continue;
    if (terms[i].find("...", pos + 3) != std::string::npos) fail("an operand has two \"...\"");
    n_ell[i] = static_cast<int64_t>(ops[i]->ndim()) - static_cast<int64_t>(terms[i].size() - 3);
    if (n_ell[i] < 0) fail("operand " + std::to_string(i) + " has more labels than axes");
  }
  int64_t e = std::max(n_ell[0], n_ell[1]);
  auto fill = [](int64_t from, int64_t to) {
    std::string r;
    for (int64_t k = from; k < to; ++k) r += static_cast<char>(1 + k);
    return r;
  };
  for (int i = 0; i < 2; ++i) {
    size_t pos = terms[i].find("...");
    if (pos != std::string::npos)
      terms[i] = terms[i].substr(0, pos) + fill(e - n_ell[i], e) + terms[i].substr(pos + 3);
  }
  if (size_t pos = out.find("..."); pos != std::string::npos)
    out = out.substr(0, pos) + fill(0, e) + out.substr(pos + 3);
  std::map<char, int64_t> size;
  for (int i = 0; i < 2; ++i) {
    if (terms[i].size() != ops[i]->ndim())
      fail("operand " + std::to_string(i) + " has " + std::to_string(terms[i].size()) +
           " labels for rank " + std::to_string(ops[i]->ndim()));
    for (size_t d = 0; d < terms[i].size(); ++d) {
      char c = terms[i][d];
      if (terms[i].find(c) != d)
        fail("repeated labels in one operand (diagonals) are not supported");
      auto [it, fresh] = size.emplace(c, ops[i]->shape()[d]);
      if (!fresh && it->second != ops[i]->shape()[d])
        fail("label '" + std::string(1, c) + "' has sizes " + std::to_string(it->second) + " and " +
             std::to_string(ops[i]->shape()[d]));
    }
  }
  for (size_t d = 0; d < out.size(); ++d) {
    if (out.find(out[d]) != d) fail("repeated labels in the output");
    if (!size.count(out[d])) fail("output label '" + std::string(1, out[d]) + "' is in no operand");
  }
  auto in = [](const std::string& t, char c) { return t.find(c) != std::string::npos; };
  // Sum out labels only one operand has and the output lacks.
  Array x[2] = {a, b};
  for (int i = 0; i < 2; ++i) {
    Axes summed;
    std::string kept;
    for (size_t d = 0; d < terms[i].size(); ++d) {
      char c = terms[i][d];
      if (!in(terms[1 - i], c) && !in(out, c))
        summed.push_back(static_cast<int64_t>(d));
      else
        kept += c;
    }
    if (!summed.empty()) x[i] = jnp::sum(x[i], summed), terms[i] = kept;
  }
  std::string batch, contract, free_a, free_b;
  for (char c : terms[0]) (in(terms[1], c) ? (in(out, c) ? batch : contract) : free_a) += c;
  for (char c : terms[1])
    if (!in(terms[0], c)) free_b += c;
  auto arrange = [&](const Array& v, const std::string& t, const std::string& order) {
    Axes perm;
    for (char c : order) perm.push_back(static_cast<int64_t>(t.find(c)));
    return jnp::transpose(v, perm);
  };
  auto count = [&](const std::string& labels) {
    int64_t n = 1;
    for (char c : labels) n *= size[c];
    return n;
  };
  int64_t nb = count(batch), nc = count(contract), na = count(free_a), nf = count(free_b);
  Array lhs = jnp::reshape(arrange(x[0], terms[0], batch + free_a + contract), {nb, na, nc});
  Array rhs = jnp::reshape(arrange(x[1], terms[1], batch + contract + free_b), {nb, nc, nf});
  std::string got = batch + free_a + free_b;
  Shape got_shape;
  for (char c : got) got_shape.push_back(size[c]);
  Array y = jnp::reshape(jnp::matmul(lhs, rhs), got_shape);
  return out == got ? y : arrange(y, got, out);
}

Array Einsum::operator()(Scope& s, const Array& x,
                         const std::optional<std::string>& call_str) const {
  if (einsum_str.has_value() == call_str.has_value())
    s.fail(einsum_str ? "einsum_str is set both on the module and at the call"
                      : "einsum_str must be set on the module or at the call");
  std::string eq;
  for (char c : einsum_str ? *einsum_str : *call_str)
    if (c != ' ') eq += c;
  if (eq.find("->") == std::string::npos)
    s.fail("einsum_str '" + eq + "' must be explicit and include \"->\"");
  if (std::count(eq.begin(), eq.end(), ',') != 1)
    s.fail("einsum_str '" + eq + "' must have exactly two operands (one comma)");
  if (!x.is_float())
    s.fail(std::string("expected a float32 input, got ") + dtype_name(x.dtype()) + " " +
           to_string(x.shape()));
  Array kernel = s.param("kernel", kernel_init, Shape(shape));
  std::optional<Array> bias;
  std::string rhs = eq.substr(eq.find(',') + 1, eq.find("->") - eq.find(',') - 1);
  std::string out = eq.substr(eq.find("->") + 2);
  if (use_bias) {
    // Flax's _get_bias_shape: the output axes labelled by a kernel axis. The kernel term must
    // name its axes with letters (an "..." there has no fixed size).
    if (rhs.find("...") != std::string::npos || rhs.size() != shape.size())
      s.fail("einsum_str '" + eq + "': the kernel term '" + rhs + "' must label each of the " +
             std::to_string(shape.size()) + " kernel axes with a letter");
    size_t lead = 0;  // output axes an "..." stands for, before the letters after it
    if (size_t pos = out.find("..."); pos != std::string::npos) {
      std::string lhs = eq.substr(0, eq.find(','));
      int64_t letters = static_cast<int64_t>(lhs.size()) - 3;
      lead = static_cast<size_t>(std::max<int64_t>(0, static_cast<int64_t>(x.ndim()) - letters));
      out = out.substr(0, pos) + std::string(lead, '.') + out.substr(pos + 3);
    }
    Shape bias_shape, broadcast_shape;
    for (char c : out) {
      size_t k = c == '.' ? std::string::npos : rhs.find(c);
      broadcast_shape.push_back(k == std::string::npos ? 1 : shape[k]);
      if (k != std::string::npos) bias_shape.push_back(shape[k]);
    }
    bias = jnp::reshape(s.param("bias", bias_init, bias_shape), broadcast_shape);
  }
  Array y;
  try {
    y = einsum(eq, x, kernel);
  } catch (const std::invalid_argument& e) {
    s.fail(e.what());
  }
  return bias ? y + *bias : y;
}

Array Embed::embedding(Scope& s) const {
  if (num_embeddings <= 0 || features <= 0)
    s.fail("num_embeddings and features must be positive, got " + std::to_string(num_embeddings) +
           " and " + std::to_string(features));
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
             " (valid: [-" + std::to_string(num_embeddings) + ", " +
             std::to_string(num_embeddings) + "))");
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
