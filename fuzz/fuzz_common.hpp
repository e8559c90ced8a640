// Shared by the fuzz targets and the seed-corpus generator: the target trees inputs are
// restored against, and the check that a successful restore really has the target's layout.
//
// Contract under test (serialization/serialization.hpp): malformed input throws SerializationError and
// nothing else; it never crashes, hangs, leaks or reads out of bounds. A fuzz target catches
// SerializationError only, so any other exception, sanitizer report or failed check is a crash.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "core/random.hpp"
#include "core/tree.hpp"
#include "optax/optax.hpp"
#include "serialization/serialization.hpp"
#include "training/train_state.hpp"

namespace flaxpp::fuzz {

// Every dtype, a scalar, a (0, 3) leaf (empty lists) and nesting: the JSON / msgpack target.
inline Tree params_target() {
  return Tree{
      {"params",
       Tree{{"Dense_0", Tree{{"kernel", Array::from({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6})},
                             {"bias", Array::from({3}, std::vector<float>{0.5f, -0.f, 1e-5f})}}},
            {"empty", Array::empty({0, 3}, DType::float32)}}},
      {"step", Array(int32_t{7})},
      {"mask", Array::from_bool({2}, {true, false})},
      {"rng", Array::from({2}, std::vector<uint32_t>{0u, 4000000000u})}};
}

// A TrainState for a 2-layer MLP with a chained optimizer (clip + adam): the checkpoint target.
inline training::TrainState train_state_target() {
  Tree params{{"Dense_0", Tree{{"kernel", Array::from({3, 4}, std::vector<float>(12, 0.25f))},
                               {"bias", Array::from({4}, std::vector<float>(4, 0.f))}}},
              {"Dense_1", Tree{{"kernel", Array::from({4, 2}, std::vector<float>(8, -0.5f))},
                               {"bias", Array::from({2}, std::vector<float>{1.f, 2.f})}}}};
  auto tx = optax::chain({optax::clip_by_global_norm(1.0), optax::adam(1e-3)});
  return training::TrainState::create(params, tx, random::PRNGKey(42));
}

[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "fuzz check failed: %s\n", what);
  std::abort();
}

// A restore that succeeded must have exactly the target's structure, shapes and dtypes.
inline void check_like(const Tree& target, const Tree& got) {
  if (!(tree_structure(target) == tree_structure(got)))
    die("restored structure differs from target");
  auto a = flatten_dict(target), b = flatten_dict(got);
  if (a.size() != b.size()) die("restored leaf count differs from target");
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].first != b[i].first) die("restored key order differs from target");
    if (a[i].second.shape() != b[i].second.shape()) die("restored shape differs from target");
    if (a[i].second.dtype() != b[i].second.dtype()) die("restored dtype differs from target");
  }
}

}  // namespace flaxpp::fuzz
