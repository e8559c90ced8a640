// flaxpp's exceptions are one family: whatever flaxpp throws for bad input (a wrong shape or
// dtype, a module misused, a malformed or mismatched file) is a std::invalid_argument, so one
// `catch (const std::invalid_argument&)` sees every such error wherever it was raised: an op
// inside a module, the module's own checks, or a loader. The subclasses say where:
//
//   std::invalid_argument            ops (jnp::, random::, autodiff): the op, shapes, values
//     flaxpp::Error                  raised by the layers above core/
//       nn::ModuleError              a module's checks: the module path first
//       SerializationError           a file or state dict: the '/'-path, file, byte or line
//
// Conditions that are not bad input stay std::runtime_error: a non-finite value found by
// check_finite (core/debug.hpp) and a failing MPI call (core/mpi/).
#pragma once

#include <stdexcept>

namespace flaxpp {

class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

}  // namespace flaxpp
