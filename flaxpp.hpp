// flaxpp: Flax (flax.linen) and the JAX core it needs, in C++20. One include for everything:
//   #include <flaxpp/flaxpp.hpp>
#pragma once
#include "core/array.hpp"
#include "core/autodiff.hpp"
#include "core/ops.hpp"
