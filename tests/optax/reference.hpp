// Shared by the optax tests: a fixed 10-step gradient sequence, a runner that records each
// step's updates, a double-precision reference loop's comparison, and the checkpoint round trip
// every optimizer state goes through.
//
// Tolerance. The library computes in float32 as optax does; the references are optax's published
// update rules evaluated in double, with the scalars optax computes in float32 computed the same
// way (f32(b) for a hyper-parameter b, bc32 for 1 - b^t): 1 - 0.999^t is a cancellation, so
// float32's rounding of 0.999 and of the power alone moves it by 1e-5 relative, which is optax's
// behaviour, not an error to hide behind a loose tolerance. One float32 rounding is up to
// 2^-24 = 6e-8 relative, so 1e-7 cannot hold after the ~10 roundings of one step, let alone ten
// steps of moments feeding each other; kRel = 2e-6 (about 30 roundings) holds for every
// optimizer here (the worst pure relative differences, 2.2e-6, are on small entries of radam
// and adabelief, below the floor that follows). It catches a wrong formula, constant or count
// (an off-by-one in t moves Adam's bias correction by 5% at t = 10), not the last-bit order of
// float32 operations: alias_test's float32 replay checks that, bit for bit. Values are compared
// against the step's largest |update| times kRel as an absolute floor, since a near-zero entry
// has no meaningful relative error.
#pragma once

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "optax/optax.hpp"
#include "training/train_state.hpp"

namespace optax_test {

using namespace flaxpp;
using Vec = std::vector<double>;
inline constexpr double kRel = 2e-6;
inline constexpr int kSteps = 10;

// The gradient of leaf `leaf`, element i, at step t: float32 values of mixed sign and size.
// Out of line: inlined into grads_vec's loop at -O3, g++ 12 kept the double before the float
// rounding for some elements, so the reference saw other inputs than the library.
[[gnu::noinline]] inline float grad_value(int t, size_t i, int leaf = 0) {
  return static_cast<float>(std::sin(0.9 * t + 1.7 * static_cast<double>(i) + leaf) *
                            (0.5 + 0.25 * static_cast<double>(i % 5)));
}
inline Vec grads_vec(int t, size_t n, int leaf = 0) {
  Vec g(n);
  for (size_t i = 0; i < n; ++i) g[i] = grad_value(t, i, leaf);
  return g;
}
// Every leaf of `like` filled with grad_value (leaves numbered in sorted order).
inline Tree grads_like(const Tree& like, int t) {
  int leaf = 0;
  return tree_map(
      [&](const Array& p) {
        std::vector<float> g(static_cast<size_t>(p.size()));
        for (size_t i = 0; i < g.size(); ++i) g[i] = grad_value(t, i, leaf);
        ++leaf;
        return Array::from(p.shape(), g);
      },
      like);
}

// A hyper-parameter as optax's float32 sees it, and 1 - b^t as optax computes it (float32 power of
// the int32 count).
inline double f32(double b) { return static_cast<float>(b); }
inline double bc32(double b, int t) {
  return 1.f - std::pow(static_cast<float>(b), static_cast<float>(t));
}

inline Array vec_array(const Shape& shape, const Vec& v) {
  std::vector<float> f(v.begin(), v.end());
  return Array::from(shape, f);
}
inline Vec to_vec(const Array& a) {
  auto f = a.to_float();
  return Vec(f.begin(), f.end());
}

// Runs tx for kSteps from params with grads_like(params, t); returns each step's updates.
inline std::vector<Tree> run_updates(const optax::GradientTransformation& tx, Tree params,
                                     Tree* final_state = nullptr) {
  Tree state = tx.init(params);
  std::vector<Tree> out;
  for (int t = 0; t < kSteps; ++t) {
    auto [u, s] = tx.update(grads_like(params, t), state, params);
    state = s;
    params = optax::apply_updates(params, u);
    out.push_back(u);
  }
  if (final_state) *final_state = state;
  return out;
}

// got vs want, elementwise: |got - want| <= rel * max(|want|, max |want of the step|) .
inline void check_close(const Vec& got, const Vec& want, double rel, const std::string& what) {
  REQUIRE(got.size() == want.size());
  double scale = 0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  for (size_t i = 0; i < got.size(); ++i) {
    double bound = rel * std::max(std::abs(want[i]), scale) + 1e-30;
    INFO(what << "[" << i << "]: got " << got[i] << ", want " << want[i]);
    CHECK(std::abs(got[i] - want[i]) <= bound);
  }
}

// The worst relative difference, for MESSAGE lines.
inline double max_rel(const Vec& got, const Vec& want) {
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::abs(got[i] - want[i]) / std::max(std::abs(want[i]), 1e-30));
  return worst;
}

inline std::filesystem::path fresh_dir(const std::string& name) {
  auto d = std::filesystem::path(FLAXPP_BINARY_DIR) / "test_tmp" / name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

// Five steps, a checkpoint, a restore into a fresh TrainState, five more steps on both: the
// restored state must equal the saved one and continue bit for bit.
inline void check_checkpoint_round_trip(const optax::GradientTransformation& tx, const Tree& params,
                                        const std::string& name) {
  auto dir = fresh_dir("optax_" + name);
  auto s = training::TrainState::create(params, tx);
  for (int t = 0; t < 5; ++t) s = s.apply_gradients(grads_like(s.params, t));
  training::save_checkpoint(dir, s, s.step);
  auto r = training::restore_checkpoint(dir, training::TrainState::create(params, tx));
  CHECK(r.step == 5);
  CHECK(tree_equal(r.opt_state, s.opt_state));
  CHECK(tree_structure(r.opt_state) == tree_structure(s.opt_state));
  for (int t = 5; t < 10; ++t) {
    s = s.apply_gradients(grads_like(s.params, t));
    r = r.apply_gradients(grads_like(r.params, t));
  }
  CHECK(tree_equal(r.params, s.params));
  CHECK(tree_equal(r.opt_state, s.opt_state));
}

}  // namespace optax_test
