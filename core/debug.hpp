// Optional numeric checks for training loops (chex.assert_tree_all_finite, jax_debug_nans).
//
//   auto [loss, grads] = value_and_grad(loss_fn)(params, batch);
//   check_finite(loss, "loss");     // a leaf root works too (Tree converts from Array)
//   check_finite(grads, "grads");
//   // throws std::runtime_error:
//   // "check_finite: grads/Dense_0/kernel: nan at index 5 [1, 2] of float32(3,4); 2 of 12 values not finite"
//
// Leaves are visited in insertion order (flatten_dict's, the checkpoint's order); the first
// leaf holding a NaN or +-Inf is reported with the first bad value, its flat index and its
// index per axis, and how many values of that leaf are bad. Only float32 leaves can fail:
// int32, uint32 and bool leaves are skipped. Costs one pass over the data; nothing is recorded
// for autodiff. `what` prefixes the path ("grads/..."); empty means the path alone.
#pragma once

#include <string>

#include "tree.hpp"

namespace flaxpp {

void check_finite(const Tree& tree, const std::string& what = "");

}  // namespace flaxpp
