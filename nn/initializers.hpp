// jax.nn.initializers (what flax.linen.initializers re-exports), bit-exact with JAX.
//
//   namespace init = flaxpp::nn::initializers;
//   init::Initializer k = init::lecun_normal();          // Dense's default kernel_init
//   Array w = k(random::PRNGKey(0), {784, 128}, DType::float32);
//   Array b = init::zeros(key, {128});                    // zeros/ones are initializers themselves
//   auto emb = init::variance_scaling(1.0, "fan_in", "normal", {-2}, {0});  // nn.Embed's default
//
// An initializer is called as init(key, shape, dtype) like JAX's. Random initializers need
// DType::float32; zeros, ones and constant accept any dtype.
//
// Fans (JAX's _compute_fans): in_size / out_size / batch_size are the products of the shape over
// in_axis / out_axis / batch_axis (negative axes count from the end; a single axis is a list of
// one; the same axis may appear in two lists), receptive = prod(shape)/in/out/batch as a double
// (true division), fan_in = in_size * receptive, fan_out = out_size * receptive.
// variance_scaling: variance = float32(scale / denominator), denominator = fan_in, fan_out,
// (fan_in + fan_out)/2 or sqrt(fan_in fan_out) for mode "fan_in", "fan_out", "fan_avg",
// "fan_geo_avg"; then by distribution
//   "truncated_normal": truncated_normal(key, -2, 2) * (sqrt(variance) / 0.87962566f)
//   "normal":           normal(key) * sqrt(variance)
//   "uniform":          uniform(key, -1, 1) * sqrt(3 * variance)        (all float32 ops)
// Errors (std::invalid_argument, naming the value): unknown mode or distribution (when the
// initializer is made), a shape of rank < 2, an axis out of range or a zero fan (when called),
// a non-float32 dtype for a random initializer.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "../core/array.hpp"
#include "../core/random.hpp"

namespace flaxpp::nn::initializers {

using Initializer = std::function<Array(random::Key key, const Shape& shape, DType dtype)>;
using AxisList = std::vector<int64_t>;

// ---- constant initializers (the key is ignored) ----
Array zeros(random::Key key, const Shape& shape, DType dtype = DType::float32);
Array ones(random::Key key, const Shape& shape, DType dtype = DType::float32);
Initializer zeros_init();  // Flax's spelling: returns `zeros`
Initializer ones_init();
Initializer constant(double value);

// ---- plain random initializers ----
Initializer normal(double stddev = 1e-2);  // normal(key) * float32(stddev)
Initializer uniform(double scale = 1e-2);  // uniform(key, [0, 1)) * float32(scale)
// truncated_normal(key, lower, upper) * float32(stddev); no 0.8796 correction (as JAX).
Initializer truncated_normal(double stddev = 1e-2, double lower = -2.0, double upper = 2.0);

// ---- variance scaling and its named forms ----
std::pair<double, double> compute_fans(const Shape& shape, const AxisList& in_axis = {-2},
                                       const AxisList& out_axis = {-1},
                                       const AxisList& batch_axis = {});
Initializer variance_scaling(double scale, const std::string& mode, const std::string& distribution,
                             AxisList in_axis = {-2}, AxisList out_axis = {-1},
                             AxisList batch_axis = {});

Initializer lecun_normal(AxisList in_axis = {-2}, AxisList out_axis = {-1},
                         AxisList batch_axis = {});
Initializer lecun_uniform(AxisList in_axis = {-2}, AxisList out_axis = {-1},
                          AxisList batch_axis = {});
Initializer glorot_normal(AxisList in_axis = {-2}, AxisList out_axis = {-1},
                          AxisList batch_axis = {});
Initializer glorot_uniform(AxisList in_axis = {-2}, AxisList out_axis = {-1},
                           AxisList batch_axis = {});
Initializer he_normal(AxisList in_axis = {-2}, AxisList out_axis = {-1}, AxisList batch_axis = {});
Initializer he_uniform(AxisList in_axis = {-2}, AxisList out_axis = {-1}, AxisList batch_axis = {});
// JAX's aliases.
Initializer xavier_normal(AxisList in_axis = {-2}, AxisList out_axis = {-1},
                          AxisList batch_axis = {});
Initializer xavier_uniform(AxisList in_axis = {-2}, AxisList out_axis = {-1},
                           AxisList batch_axis = {});
Initializer kaiming_normal(AxisList in_axis = {-2}, AxisList out_axis = {-1},
                           AxisList batch_axis = {});
Initializer kaiming_uniform(AxisList in_axis = {-2}, AxisList out_axis = {-1},
                            AxisList batch_axis = {});

}  // namespace flaxpp::nn::initializers
