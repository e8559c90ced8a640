#include "nn/conv.hpp"

#include <functional>
#include <limits>
#include <stdexcept>

#include "core/ops.hpp"

namespace flaxpp::nn {

namespace {

using Pairs = std::vector<std::pair<int64_t, int64_t>>;
using Fail = std::function<void(const std::string&)>;

std::string list_string(const std::vector<int64_t>& v) {
  std::string r = "(";
  for (size_t i = 0; i < v.size(); ++i) r += (i ? ", " : "") + std::to_string(v[i]);
  return r + (v.size() == 1 ? ",)" : ")");
}

// Flax's maybe_broadcast: empty means 1s, one entry is repeated for every spatial dim.
std::vector<int64_t> per_dim(const std::vector<int64_t>& v, size_t n, const char* field,
                             const Fail& fail) {
  std::vector<int64_t> r = v.empty()       ? std::vector<int64_t>(n, 1)
                           : v.size() == 1 ? std::vector<int64_t>(n, v[0])
                                           : v;
  if (r.size() != n)
    fail(std::string(field) + " " + list_string(v) + " has " + std::to_string(v.size()) +
         " entries for " + std::to_string(n) + " spatial dims");
  for (int64_t e : r)
    if (e <= 0) fail(std::string(field) + " must be positive, got " + list_string(v));
  return r;
}

// lax.padtype_to_pads for "SAME": out = ceil(in / stride), pad the rest, the extra one high.
Pairs same_pads(const std::vector<int64_t>& in, const std::vector<int64_t>& window,
                const std::vector<int64_t>& strides) {
  Pairs r;
  for (size_t i = 0; i < in.size(); ++i) {
    int64_t out = (in[i] + strides[i] - 1) / strides[i];
    int64_t total = std::max<int64_t>(0, (out - 1) * strides[i] + window[i] - in[i]);
    r.emplace_back(total / 2, total - total / 2);
  }
  return r;
}

Array pad_axis(const Array& x, size_t axis, int64_t lo, int64_t hi, float value) {
  if (lo == 0 && hi == 0) return x;
  std::vector<Array> parts;
  Shape s = x.shape();
  if (lo > 0) s[axis] = lo, parts.push_back(jnp::full(s, value));
  parts.push_back(x);
  if (hi > 0) s[axis] = hi, parts.push_back(jnp::full(s, value));
  return jnp::concatenate(parts, static_cast<int64_t>(axis));
}

// jnp.pad(mode="wrap") for lo, hi <= the axis' size.
Array wrap_axis(const Array& x, size_t axis, int64_t lo, int64_t hi) {
  int64_t n = x.shape()[axis];
  auto ax = static_cast<int64_t>(axis);
  std::vector<Array> parts;
  if (lo > 0) parts.push_back(jnp::slice(x, ax, n - lo, n));
  parts.push_back(x);
  if (hi > 0) parts.push_back(jnp::slice(x, ax, 0, hi));
  return parts.size() == 1 ? x : jnp::concatenate(parts, ax);
}

// lax's lhs_dilation on one axis: d - 1 zeros between neighbours, size (n - 1) * d + 1.
Array dilate_axis(const Array& x, size_t axis, int64_t d) {
  if (d == 1 || x.shape()[axis] == 0) return x;
  auto ax = static_cast<int64_t>(axis);
  Array e = jnp::expand_dims(x, ax + 1);
  Shape zs = e.shape();
  zs[axis + 1] = d - 1;
  Array z = jnp::concatenate({e, jnp::zeros(zs)}, ax + 1);
  Shape r = x.shape();
  int64_t n = r[axis];
  r[axis] = n * d;
  return jnp::slice(jnp::reshape(z, r), ax, 0, (n - 1) * d + 1);
}

// One strided slice per window offset (row-major over the window), each (..., out..., C) with
// the spatial axes starting at `first`: the patches of a window operation.
std::vector<Array> window_slices(const Array& x, size_t first, const std::vector<int64_t>& window,
                                 const std::vector<int64_t>& strides,
                                 const std::vector<int64_t>& dilation, std::vector<int64_t>& out,
                                 const Fail& fail) {
  size_t d = window.size();
  out.assign(d, 0);
  for (size_t i = 0; i < d; ++i) {
    int64_t span = (window[i] - 1) * dilation[i] + 1, in = x.shape()[first + i];
    if (span > in) {
      std::vector<int64_t> sp;
      for (size_t j = 0; j < d; ++j) sp.push_back(x.shape()[first + j]);
      fail("the window (dilated: " + std::to_string(span) + " on spatial dim " + std::to_string(i) +
           ") is larger than the padded input's spatial shape " + list_string(sp));
    }
    out[i] = (in - span) / strides[i] + 1;
  }
  std::vector<Array> slices;
  std::vector<int64_t> offset(d, 0);
  int64_t count = 1;
  for (int64_t w : window) count *= w;
  for (int64_t k = 0; k < count; ++k) {
    int64_t rest = k;
    for (size_t i = d; i-- > 0;) offset[i] = rest % window[i], rest /= window[i];
    std::vector<jnp::Slice> sl(first, jnp::Slice{});
    for (size_t i = 0; i < d; ++i) {
      int64_t start = offset[i] * dilation[i];
      sl.push_back({start, start + (out[i] - 1) * strides[i] + 1, strides[i]});
    }
    slices.push_back(jnp::slice(x, sl));
  }
  return slices;
}

std::vector<int64_t> spatial_of(const Array& x, size_t first, size_t d) {
  std::vector<int64_t> r;
  for (size_t i = 0; i < d; ++i) r.push_back(x.shape()[first + i]);
  return r;
}

// Explicit (low, high) pairs from `padding` (an int or pairs), checked.
Pairs explicit_pads(const Padding& padding, size_t d, const Fail& fail) {
  Pairs pads = padding.all ? Pairs(d, {*padding.all, *padding.all}) : padding.pairs;
  if (pads.size() != d)
    fail("padding has " + std::to_string(pads.size()) + " (low, high) pairs for " +
         std::to_string(d) + " spatial dims");
  for (auto [lo, hi] : pads)
    if (lo < 0 || hi < 0)
      fail("negative padding (" + std::to_string(lo) + ", " + std::to_string(hi) +
           ") is not supported");
  return pads;
}

Array pool(const char* fn, const Array& x0, const std::vector<int64_t>& window,
           const std::vector<int64_t>& strides0, const Padding& padding, float pad_value,
           const std::function<Array(const Array&, int64_t)>& reduce) {
  Fail fail = [&](const std::string& m) {
    throw std::invalid_argument(std::string(fn) + ": " + m + " (input " + to_string(x0.shape()) +
                                ", window_shape " + list_string(window) + ")");
  };
  size_t d = window.size();
  if (d == 0) fail("window_shape must list at least one spatial dim");
  if (!x0.is_float() || x0.ndim() < d + 1)
    fail("expected a float32 input (batch..., spatial..., features) of rank >= " +
         std::to_string(d + 1));
  for (int64_t w : window)
    if (w <= 0) fail("window_shape must be positive");
  if (!strides0.empty() && strides0.size() != d)
    fail("strides " + list_string(strides0) + " must have one entry per window dim");
  std::vector<int64_t> strides = per_dim(strides0, d, "strides", fail);
  bool single = x0.ndim() == d + 1;  // no batch axis: add one, as Flax's pool does
  Array x = single ? jnp::expand_dims(x0, 0) : x0;
  size_t first = x.ndim() - d - 1;
  Pairs pads;
  if (padding.mode == "VALID") {
    pads.assign(d, {0, 0});
  } else if (padding.mode == "SAME") {
    pads = same_pads(spatial_of(x, first, d), window, strides);
  } else if (!padding.mode.empty()) {
    fail("padding must be \"SAME\", \"VALID\" or (low, high) pairs, got \"" + padding.mode + "\"");
  } else {
    pads = explicit_pads(padding, d, fail);
  }
  for (size_t i = 0; i < d; ++i)
    x = pad_axis(x, first + i, pads[i].first, pads[i].second, pad_value);
  std::vector<int64_t> out;
  auto slices = window_slices(x, first, window, strides, std::vector<int64_t>(d, 1), out, fail);
  auto axis = static_cast<int64_t>(x.ndim());
  Array y = reduce(jnp::stack(slices, axis), axis);
  return single ? jnp::squeeze(y, {0}) : y;
}

}  // namespace

Array max_pool(const Array& x, const std::vector<int64_t>& window_shape,
               const std::vector<int64_t>& strides, const Padding& padding) {
  return pool("max_pool", x, window_shape, strides, padding,
              -std::numeric_limits<float>::infinity(),
              [](const Array& a, int64_t ax) { return jnp::max(a, {ax}); });
}

Array min_pool(const Array& x, const std::vector<int64_t>& window_shape,
               const std::vector<int64_t>& strides, const Padding& padding) {
  return pool("min_pool", x, window_shape, strides, padding, std::numeric_limits<float>::infinity(),
              [](const Array& a, int64_t ax) { return jnp::min(a, {ax}); });
}

Array avg_pool(const Array& x, const std::vector<int64_t>& window_shape,
               const std::vector<int64_t>& strides, const Padding& padding,
               bool count_include_pad) {
  auto sum = [](const Array& a, int64_t ax) { return jnp::sum(a, {ax}); };
  Array y = pool("avg_pool", x, window_shape, strides, padding, 0.f, sum);
  if (count_include_pad) {
    int64_t n = 1;
    for (int64_t w : window_shape) n *= w;
    return y / static_cast<float>(n);
  }
  // Divide by the number of real (unpadded) entries of each window: the same pool of ones.
  Shape ones_shape = x.shape();
  ones_shape[ones_shape.size() - 1] = 1;
  return y / pool("avg_pool", jnp::ones(ones_shape), window_shape, strides, padding, 0.f, sum);
}

Array Conv::operator()(Scope& s, const Array& x0) const {
  Fail fail = [&](const std::string& m) { s.fail(m); };
  if (features <= 0) s.fail("features must be positive, got " + std::to_string(features));
  size_t d = kernel_size.size();
  if (d == 0) s.fail("kernel_size must list at least one spatial dim");
  for (int64_t k : kernel_size)
    if (k <= 0) s.fail("kernel_size must be positive, got " + list_string(kernel_size));
  if (!x0.is_float() || x0.ndim() < d + 1)
    s.fail("expected a float32 input (batch..., " + std::to_string(d) +
           " spatial dims, features) for kernel_size " + list_string(kernel_size) + ", got " +
           dtype_name(x0.dtype()) + " " + to_string(x0.shape()));
  std::vector<int64_t> stride = per_dim(strides, d, "strides", fail);
  std::vector<int64_t> in_dil = per_dim(input_dilation, d, "input_dilation", fail);
  std::vector<int64_t> k_dil = per_dim(kernel_dilation, d, "kernel_dilation", fail);

  // All batch axes as one leading axis (one added when there is none), restored at the end.
  size_t nb = x0.ndim() - d - 1;
  Shape batch_shape, flat{1};
  for (size_t i = 0; i < nb; ++i) batch_shape.push_back(x0.shape()[i]), flat[0] *= x0.shape()[i];
  for (size_t i = nb; i < x0.ndim(); ++i) flat.push_back(x0.shape()[i]);
  Array x = jnp::reshape(x0, flat);

  std::vector<int64_t> k_eff;
  for (size_t i = 0; i < d; ++i) k_eff.push_back((kernel_size[i] - 1) * k_dil[i] + 1);
  // CIRCULAR and CAUSAL pad the input itself (Flax's jnp.pad), then the convolution is VALID;
  // other pads apply to the dilated input, as lax's.
  Pairs pads(d, {0, 0});
  const std::string& mode = padding.mode;
  bool input_dilated = false;
  for (int64_t v : in_dil) input_dilated = input_dilated || v > 1;
  if (mode == "CIRCULAR") {
    for (size_t i = 0; i < d; ++i) {
      int64_t lo = (k_eff[i] - 1) / 2, hi = k_eff[i] / 2, n = x.shape()[1 + i];
      if (lo > n || hi > n)
        s.fail("CIRCULAR padding (" + std::to_string(lo) + ", " + std::to_string(hi) +
               ") is larger than the input's spatial dim " + std::to_string(i) + " of size " +
               std::to_string(n) + ", input " + to_string(x0.shape()));
      x = wrap_axis(x, 1 + i, lo, hi);
    }
  } else if (mode == "CAUSAL") {
    if (d != 1) s.fail("CAUSAL padding is only implemented for 1-d convolutions");
    x = pad_axis(x, 1, k_dil[0] * (kernel_size[0] - 1), 0, 0.f);
  } else if (mode == "SAME" || mode == "VALID") {
    if (input_dilated)
      s.fail("string padding \"" + mode +
             "\" is not implemented with input_dilation > 1 (as in lax); give (low, high) pairs");
    if (mode == "SAME") pads = same_pads(spatial_of(x, 1, d), k_eff, stride);
  } else if (!mode.empty()) {
    s.fail(
        "padding must be \"SAME\", \"VALID\", \"CIRCULAR\", \"CAUSAL\", an int or (low, high) "
        "pairs, got \"" +
        mode + "\"");
  } else {
    pads = explicit_pads(padding, d, fail);
  }
  for (size_t i = 0; i < d; ++i) x = dilate_axis(x, 1 + i, in_dil[i]);
  for (size_t i = 0; i < d; ++i) x = pad_axis(x, 1 + i, pads[i].first, pads[i].second, 0.f);

  int64_t in_features = x0.shape().back(), groups = feature_group_count;
  if (groups <= 0 || in_features % groups != 0 || features % groups != 0)
    s.fail("feature_group_count " + std::to_string(groups) + " must divide the input features (" +
           std::to_string(in_features) + ") and features (" + std::to_string(features) + ")");
  Shape kernel_shape(kernel_size);
  kernel_shape.push_back(in_features / groups);
  kernel_shape.push_back(features);
  if (mask && mask->shape() != kernel_shape)
    s.fail("mask needs to have the same shape as the kernel: mask " + to_string(mask->shape()) +
           ", kernel " + to_string(kernel_shape));
  Array kernel = s.param("kernel", kernel_init, kernel_shape);
  if (mask) kernel = kernel * *mask;
  std::optional<Array> bias;
  if (use_bias) bias = s.param("bias", bias_init, {features});

  std::vector<int64_t> out;
  auto slices = window_slices(x, 1, kernel_size, stride, k_dil, out, fail);
  Array patches = jnp::stack(slices, static_cast<int64_t>(d + 1));  // (B, out..., K, C)
  int64_t rows = x.shape()[0], K = static_cast<int64_t>(slices.size());
  for (int64_t o : out) rows *= o;
  int64_t cg = in_features / groups, fg = features / groups;
  Array y;
  if (groups == 1) {
    y = jnp::matmul(jnp::reshape(patches, {rows, K * in_features}),
                    jnp::reshape(kernel, {K * in_features, features}));
  } else {
    std::vector<Array> parts;
    auto last = static_cast<int64_t>(patches.ndim()) - 1;
    for (int64_t g = 0; g < groups; ++g) {
      Array pg = jnp::reshape(jnp::slice(patches, last, g * cg, (g + 1) * cg), {rows, K * cg});
      Array kg = jnp::slice(kernel, static_cast<int64_t>(d + 1), g * fg, (g + 1) * fg);
      parts.push_back(jnp::matmul(pg, jnp::reshape(kg, {K * cg, fg})));
    }
    y = jnp::concatenate(parts, 1);
  }
  if (bias) y = y + *bias;
  Shape out_shape = batch_shape;
  for (int64_t o : out) out_shape.push_back(o);
  out_shape.push_back(features);
  return jnp::reshape(y, out_shape);
}

Array ConvTranspose::operator()(Scope& s, const Array& x) const {
  Fail fail = [&](const std::string& m) { s.fail(m); };
  size_t d = kernel_size.size();
  if (d == 0) s.fail("kernel_size must list at least one spatial dim");
  std::vector<int64_t> stride = per_dim(strides, d, "strides", fail);
  std::vector<int64_t> k_dil = per_dim(kernel_dilation, d, "kernel_dilation", fail);
  Pairs pads;
  if (padding.mode == "SAME" || padding.mode == "VALID") {
    for (size_t i = 0; i < d; ++i) {
      int64_t k = (kernel_size[i] - 1) * k_dil[i] + 1, st = stride[i], len = 0, lo = 0;
      if (padding.mode == "SAME") {
        len = k + st - 2;
        lo = st > k - 1 ? k - 1 : (len + 1) / 2;
      } else {
        len = k + st - 2 + std::max<int64_t>(k - st, 0);
        lo = k - 1;
      }
      pads.emplace_back(lo, len - lo);
    }
  } else if (!padding.mode.empty()) {
    s.fail("padding must be \"SAME\", \"VALID\", an int or (low, high) pairs, got \"" +
           padding.mode + "\"");
  } else {
    pads = explicit_pads(padding, d, fail);
  }
  // The same kernel layout (k..., in, features) and parameter order as Conv, in this scope.
  Conv conv{.features = features,
            .kernel_size = kernel_size,
            .strides = {1},
            .padding = Padding(pads),
            .input_dilation = stride,
            .kernel_dilation = k_dil,
            .use_bias = use_bias,
            .mask = mask,
            .kernel_init = kernel_init,
            .bias_init = bias_init};
  return conv(s, x);
}

}  // namespace flaxpp::nn
