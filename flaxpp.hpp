// flaxpp: Flax (flax.linen) and the JAX core it needs, in C++20. One include for everything:
//   #include <flaxpp/flaxpp.hpp>
// (flaxpp::mpi, the optional MPI component, is separate: <flaxpp/core/mpi/collectives.hpp>.)
#pragma once
#include "core/array.hpp"
#include "core/autodiff.hpp"
#include "core/debug.hpp"
#include "core/error.hpp"
#include "core/format.hpp"
#include "core/ops.hpp"
#include "core/parallel.hpp"
#include "core/random.hpp"
#include "core/tree.hpp"
#include "data/augment.hpp"
#include "data/dataset.hpp"
#include "data/loader.hpp"
#include "models/gmlp.hpp"
#include "nn/losses.hpp"
#include "nn/nn.hpp"
#include "optax/optax.hpp"
#include "serialization/serialization.hpp"
#include "training/train_state.hpp"
