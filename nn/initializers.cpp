#include "nn/initializers.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace flaxpp::nn::initializers {

namespace {

Array filled(const Shape& shape, DType dtype, double value) {
  Array a = Array::empty(shape, dtype);
  const int64_t n = a.size();
  switch (dtype) {
    case DType::float32: std::fill_n(a.mutable_data<float>(), n, static_cast<float>(value)); break;
    case DType::int32:
      std::fill_n(a.mutable_data<int32_t>(), n, static_cast<int32_t>(value));
      break;
    case DType::uint32:
      std::fill_n(a.mutable_data<uint32_t>(), n, static_cast<uint32_t>(value));
      break;
    case DType::bool_: std::fill_n(a.mutable_data<uint8_t>(), n, value != 0); break;
  }
  return a;
}

void require_float32(DType dtype, const char* who) {
  if (dtype != DType::float32)
    throw std::invalid_argument(std::string(who) + ": only float32 is supported, got dtype " +
                                dtype_name(dtype));
}

// x * c for a fresh float32 array, elementwise (JAX: `sample * jnp.array(c, dtype)`).
Array scaled(Array a, float c) {
  float* p = a.mutable_data<float>();
  for (int64_t i = 0, n = a.size(); i < n; ++i) p[i] = p[i] * c;
  return a;
}

int64_t size_over(const Shape& shape, const AxisList& axes, const char* which) {
  int64_t size = 1;
  for (int64_t axis : axes) {
    int64_t r = static_cast<int64_t>(shape.size());
    if (axis < -r || axis >= r)
      throw std::invalid_argument(std::string("compute_fans: ") + which + " " +
                                  std::to_string(axis) + " is out of range for shape " +
                                  to_string(shape));
    size *= shape[axis < 0 ? axis + r : axis];
  }
  return size;
}

}  // namespace

Array zeros(random::Key, const Shape& shape, DType dtype) { return filled(shape, dtype, 0.0); }
Array ones(random::Key, const Shape& shape, DType dtype) { return filled(shape, dtype, 1.0); }
Initializer zeros_init() { return zeros; }
Initializer ones_init() { return ones; }

Initializer constant(double value) {
  return
      [value](random::Key, const Shape& shape, DType dtype) { return filled(shape, dtype, value); };
}

Initializer normal(double stddev) {
  return [s = static_cast<float>(stddev)](random::Key key, const Shape& shape, DType dtype) {
    require_float32(dtype, "normal initializer");
    return scaled(random::normal(key, shape), s);
  };
}

Initializer uniform(double scale) {
  return [s = static_cast<float>(scale)](random::Key key, const Shape& shape, DType dtype) {
    require_float32(dtype, "uniform initializer");
    return scaled(random::uniform(key, shape), s);
  };
}

Initializer truncated_normal(double stddev, double lower, double upper) {
  return [s = static_cast<float>(stddev), lo = static_cast<float>(lower),
          hi = static_cast<float>(upper)](random::Key key, const Shape& shape, DType dtype) {
    require_float32(dtype, "truncated_normal initializer");
    return scaled(random::truncated_normal(key, lo, hi, shape), s);
  };
}

std::pair<double, double> compute_fans(const Shape& shape, const AxisList& in_axis,
                                       const AxisList& out_axis, const AxisList& batch_axis) {
  if (shape.size() <= 1)
    throw std::invalid_argument("compute_fans: can't compute input and output sizes of a " +
                                std::to_string(shape.size()) + "-dimensional weights tensor " +
                                to_string(shape) + "; must be at least 2D");
  const int64_t in_size = size_over(shape, in_axis, "in_axis");
  const int64_t out_size = size_over(shape, out_axis, "out_axis");
  const int64_t batch_size = size_over(shape, batch_axis, "batch_axis");
  if (in_size == 0 || out_size == 0 || batch_size == 0)
    throw std::invalid_argument("compute_fans: zero-sized fan axis in shape " + to_string(shape));
  // Python true division, left to right.
  const double receptive = static_cast<double>(numel(shape)) / in_size / out_size / batch_size;
  return {in_size * receptive, out_size * receptive};
}

Initializer variance_scaling(double scale, const std::string& mode, const std::string& distribution,
                             AxisList in_axis, AxisList out_axis, AxisList batch_axis) {
  if (mode != "fan_in" && mode != "fan_out" && mode != "fan_avg" && mode != "fan_geo_avg")
    throw std::invalid_argument("variance_scaling: invalid mode '" + mode +
                                "' (expected fan_in, fan_out, fan_avg or fan_geo_avg)");
  if (distribution != "truncated_normal" && distribution != "normal" && distribution != "uniform")
    throw std::invalid_argument("variance_scaling: invalid distribution '" + distribution +
                                "' (expected truncated_normal, normal or uniform)");
  return [=](random::Key key, const Shape& shape, DType dtype) {
    require_float32(dtype, "variance_scaling initializer");
    auto [fan_in, fan_out] = compute_fans(shape, in_axis, out_axis, batch_axis);
    double denominator = mode == "fan_in"    ? fan_in
                         : mode == "fan_out" ? fan_out
                         : mode == "fan_avg" ? (fan_in + fan_out) / 2
                                             : std::pow(fan_in * fan_out, 0.5);
    if (denominator == 0)
      throw std::invalid_argument("variance_scaling: " + mode + " is 0 for shape " +
                                  to_string(shape));
    const float variance = static_cast<float>(scale / denominator);  // double, then float32
    if (distribution == "truncated_normal") {
      // The std of a standard normal truncated to (-2, 2).
      const float stddev = std::sqrt(variance) / static_cast<float>(.87962566103423978);
      return scaled(random::truncated_normal(key, -2.f, 2.f, shape), stddev);
    }
    if (distribution == "normal") return scaled(random::normal(key, shape), std::sqrt(variance));
    return scaled(random::uniform(key, shape, -1.f, 1.f), std::sqrt(3.f * variance));
  };
}

#define FLAXPP_VARIANCE_SCALING(name, scale, mode, distribution)                                \
  Initializer name(AxisList in_axis, AxisList out_axis, AxisList batch_axis) {                  \
    return variance_scaling(scale, mode, distribution, std::move(in_axis), std::move(out_axis), \
                            std::move(batch_axis));                                             \
  }
FLAXPP_VARIANCE_SCALING(lecun_normal, 1.0, "fan_in", "truncated_normal")
FLAXPP_VARIANCE_SCALING(lecun_uniform, 1.0, "fan_in", "uniform")
FLAXPP_VARIANCE_SCALING(glorot_normal, 1.0, "fan_avg", "truncated_normal")
FLAXPP_VARIANCE_SCALING(glorot_uniform, 1.0, "fan_avg", "uniform")
FLAXPP_VARIANCE_SCALING(he_normal, 2.0, "fan_in", "truncated_normal")
FLAXPP_VARIANCE_SCALING(he_uniform, 2.0, "fan_in", "uniform")
FLAXPP_VARIANCE_SCALING(xavier_normal, 1.0, "fan_avg", "truncated_normal")
FLAXPP_VARIANCE_SCALING(xavier_uniform, 1.0, "fan_avg", "uniform")
FLAXPP_VARIANCE_SCALING(kaiming_normal, 2.0, "fan_in", "truncated_normal")
FLAXPP_VARIANCE_SCALING(kaiming_uniform, 2.0, "fan_in", "uniform")
#undef FLAXPP_VARIANCE_SCALING

}  // namespace flaxpp::nn::initializers
