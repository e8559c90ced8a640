// Conv, ConvTranspose, max_pool, avg_pool and min_pool, as flax.linen.Conv / ConvTranspose and
// flax.linen.pooling, channels
// last (N, spatial..., C) with any number of spatial dims.
//
//   Array y = s(nn::Conv{.features = 32, .kernel_size = {3, 3}}, x);   // x (N, H, W, C)
//   // params: kernel (3, 3, C / feature_group_count, 32) lecun_normal (fan_in 3*3*C/g), bias (32,)
//   nn::Conv{.features = 8, .kernel_size = {3}, .strides = {2}, .padding = "CIRCULAR"}
//   nn::Conv{.features = 8, .kernel_size = {3, 3}, .padding = {{1, 1}, {0, 2}}}   // explicit
//   Array p = nn::avg_pool(y, {2, 2}, {2, 2});                          // window, strides
//
// Fields as Flax (a one-element list broadcasts to every spatial dim, like Flax's int): strides,
// padding ("SAME", "VALID", "CIRCULAR", "CAUSAL" (1-d), an int, or (low, high) pairs),
// input_dilation, kernel_dilation, feature_group_count, use_bias, mask (multiplies the kernel),
// kernel_init, bias_init. Leading axes beyond one batch axis are flattened and restored; an input
// without a batch axis gets one for the call. SAME pads are JAX's (out = ceil(in / stride),
// total = max(0, (out - 1) * stride + dilated window - in), low = total / 2), computed on the
// undilated input; string padding with input_dilation > 1 is an error, as in lax. Not here
// (yet): "REFLECT" padding, negative (cropping) pads, ConvLocal.
//
// This is a composition of existing jnp ops (pad by concatenation, dilation by interleaving
// zeros, one strided slice per window offset stacked into patches, then one matmul per feature
// group), so gradients come for free; a conv_general_dilated / reduce_window primitive would
// avoid the (window size)-fold patch copy. max_pool's gradient splits ties evenly among the
// window's maxima (jnp::max's rule); XLA's select_and_scatter gives it all to one of them.
//
// Errors (ModuleError for Conv, std::invalid_argument for the pools, naming the shapes): ranks
// that do not fit kernel_size, a window larger than the (padded) input, channels or features
// not divisible by feature_group_count, a mask of the wrong shape, unknown padding strings.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "module.hpp"

namespace flaxpp::nn {

// Flax's PaddingLike: a mode string, one int for every side, or (low, high) per spatial dim.
struct Padding {
  std::string mode;  // "SAME", "VALID", "CIRCULAR", "CAUSAL"; empty: use `pairs`
  std::vector<std::pair<int64_t, int64_t>> pairs;
  std::optional<int64_t> all;  // a single int: (all, all) on every spatial dim

  Padding(const char* m) : mode(m) {}             // NOLINT: .padding = "VALID"
  Padding(std::string m) : mode(std::move(m)) {}  // NOLINT
  Padding(int p) : all(p) {}                      // NOLINT: .padding = 1
  Padding(std::initializer_list<std::pair<int64_t, int64_t>> p) : pairs(p) {}   // {{1, 1}, {0, 2}}
  Padding(std::vector<std::pair<int64_t, int64_t>> p) : pairs(std::move(p)) {}  // NOLINT
};

struct Conv : Module<Conv> {
  int64_t features = 0;
  std::vector<int64_t> kernel_size;
  std::vector<int64_t> strides = {1};
  Padding padding = "SAME";
  std::vector<int64_t> input_dilation = {1};
  std::vector<int64_t> kernel_dilation = {1};
  int64_t feature_group_count = 1;
  bool use_bias = true;
  std::optional<Array> mask = std::nullopt;
  Initializer kernel_init = initializers::lecun_normal();
  Initializer bias_init = initializers::zeros;

  Array operator()(Scope& s, const Array& x) const;
};

// flax.linen.ConvTranspose (lax.conv_transpose with transpose_kernel = false): the Conv of the
// input dilated by `strides`, with "SAME" / "VALID" pads from lax's _conv_transpose_padding on
// the dilated kernel (SAME: total k + s - 2, low k - 1 if s > k - 1 else ceil(total / 2);
// VALID: total k + s - 2 + max(k - s, 0), low k - 1) or the given (low, high) pairs.
//   nn::ConvTranspose{.features = 4, .kernel_size = {3}, .padding = "VALID"} on (1, 8, 3)
//   // -> kernel (3, 3, 4), bias (4,), output (1, 10, 4)
// Not here: CIRCULAR padding and transpose_kernel.
struct ConvTranspose : Module<ConvTranspose> {
  int64_t features = 0;
  std::vector<int64_t> kernel_size;
  std::vector<int64_t> strides = {1};
  Padding padding = "SAME";
  std::vector<int64_t> kernel_dilation = {1};
  bool use_bias = true;
  std::optional<Array> mask = std::nullopt;
  Initializer kernel_init = initializers::lecun_normal();
  Initializer bias_init = initializers::zeros;

  Array operator()(Scope& s, const Array& x) const;
};

// Pools over window_shape windows of (batch..., spatial..., C) inputs; strides default to 1s,
// padding "VALID", "SAME" or (low, high) pairs (padded with -inf for max, +inf for min, 0 for
// avg). avg_pool divides by the window size, or with count_include_pad = false by the number
// of unpadded entries in each window.
Array max_pool(const Array& x, const std::vector<int64_t>& window_shape,
               const std::vector<int64_t>& strides = {}, const Padding& padding = "VALID");
Array min_pool(const Array& x, const std::vector<int64_t>& window_shape,
               const std::vector<int64_t>& strides = {}, const Padding& padding = "VALID");
Array avg_pool(const Array& x, const std::vector<int64_t>& window_shape,
               const std::vector<int64_t>& strides = {}, const Padding& padding = "VALID",
               bool count_include_pad = true);

}  // namespace flaxpp::nn
