// Helpers shared by the layer tests (linear_test, attention_test, normalization_test): float64
// comparisons and central-difference gradient checks on float32 layers.
#pragma once

#include <cmath>
#include <functional>
#include <vector>

#include <doctest/doctest.h>

#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "core/tree.hpp"
#include "nn/initializers.hpp"

namespace flaxpp::nn_testing {

inline void check_close(const Array& got, const std::vector<double>& want, double atol) {
  REQUIRE(got.size() == static_cast<int64_t>(want.size()));
  auto g = got.to_double();
  for (size_t i = 0; i < want.size(); ++i)
    CHECK_MESSAGE(std::fabs(g[i] - want[i]) <= atol, "element ", i, ": ", g[i], " vs ", want[i]);
}

inline bool bit_equal(const Array& a, const Array& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && a.to_float() == b.to_float();
}

// An initializer that returns a fixed table (Flax's `kernel_init=lambda rng, shape, dtype: t`).
// It checks the shape it is asked for, so it also shows which shape the layer passes.
inline nn::initializers::Initializer constant_table(Array table) {
  return [table](random::Key, const Shape& shape, DType) {
    REQUIRE(table.shape() == shape);
    return table;
  };
}

// Adds N(0, 0.3^2) to every leaf so ones/zeros initialisations do not hide terms.
inline Tree jitter(const Tree& params, uint32_t seed) {
  auto leaves = leaves_of(params);
  for (size_t i = 0; i < leaves.size(); ++i)
    leaves[i] = leaves[i] + 0.3f * random::normal(random::fold_in(random::PRNGKey(seed),
                                                                  static_cast<uint32_t>(i)),
                                                  leaves[i].shape());
  return rebuild_like(params, leaves);
}

// Central differences on float32 losses, taken in double: the step is the difference of the
// float32 values actually passed, fl(p+h) - fl(p-h). With h = 1e-2, losses |L| <= ~10 of a few
// dozen O(1)-curvature terms: rounding <= ~1e-6 |L| / 2h <= ~1e-3, truncation h^2/6 |L'''| <=
// ~2e-5, so 5e-3 (1 + |g|) holds with room, while a wrong rule is off by O(|g|) and fails.
constexpr double kStep = 1e-2;
constexpr double kTol = 5e-3;

inline Array with_element(const Array& a, int64_t i, float v) {
  Array c = a.copy();
  c.mutable_data<float>()[i] = v;
  return c;
}

inline double central_difference(const std::function<double(float)>& at, float p) {
  float hi = p + static_cast<float>(kStep), lo = p - static_cast<float>(kStep);
  return (at(hi) - at(lo)) / (static_cast<double>(hi) - static_cast<double>(lo));
}

using Loss = std::function<Array(const Tree&, const Array&)>;

// grad(loss)(params, x) against central differences in every parameter coordinate.
inline void check_param_grads(const Loss& loss, const Tree& params, const Array& x,
                              double tol = kTol) {
  Tree g = grad(loss)(params, x);
  CHECK(tree_structure(g) == tree_structure(params));
  auto leaves = leaves_of(params), gl = leaves_of(g);
  for (size_t k = 0; k < leaves.size(); ++k)
    for (int64_t i = 0; i < leaves[k].size(); ++i) {
      double fd = central_difference(
          [&](float v) {
            auto l = leaves;
            l[k] = with_element(leaves[k], i, v);
            return loss(rebuild_like(params, l), x).item<double>();
          },
          leaves[k].data<float>()[i]);
      double ad = gl[k].data<float>()[i];
      CHECK_MESSAGE(std::fabs(ad - fd) <= tol * (1 + std::fabs(fd)), "leaf ", k, " element ", i,
                    ": ", ad, " vs ", fd);
    }
}

// grad<1>(loss)(params, x) against central differences in every input coordinate.
inline void check_input_grads(const Loss& loss, const Tree& params, const Array& x,
                              double tol = kTol) {
  Array g = grad<1>(loss)(params, x);
  REQUIRE(g.shape() == x.shape());
  for (int64_t i = 0; i < x.size(); ++i) {
    double fd = central_difference(
        [&](float v) { return loss(params, with_element(x, i, v)).item<double>(); },
        x.data<float>()[i]);
    double ad = g.data<float>()[i];
    CHECK_MESSAGE(std::fabs(ad - fd) <= tol * (1 + std::fabs(fd)), "x element ", i, ": ", ad,
                  " vs ", fd);
  }
}

// L = sum(w * y) + sum(y^2) / 2 with fixed pseudo-random weights w.
template <class M, class... Extra>
Loss loss_of(const M& model, const Shape& out_shape, const Extra&... extra) {
  Array w = random::normal(random::PRNGKey(99), out_shape);
  return [=](const Tree& params, const Array& x) {
    Array y = model.apply(Tree{{"params", params}}, x, extra...);
    return jnp::sum(w * y + 0.5f * y * y);
  };
}

// Row-major multi-index helpers for the float64 references.
inline std::vector<int64_t> unravel(int64_t flat, const Shape& shape) {
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return idx;
}
inline int64_t ravel(const std::vector<int64_t>& idx, const Shape& shape) {
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + idx[d];
  return flat;
}

}  // namespace flaxpp::nn_testing
