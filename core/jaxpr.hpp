// make_jaxpr: trace a function into flaxpp's small typed IR and print it as JAX prints a jaxpr.
//
//   auto f = [](const Array& x) { return jnp::exp(x); };
//   Jaxpr j = make_jaxpr(f)(jnp::zeros({3}));
//   j.str() == "{ lambda ; a:f32[3]. let b:f32[3] = exp a in (b) }"
//
// Tracing runs f once on placeholders: every primitive of the table (core/primitive.hpp) appends
// one equation, typed by its shape/dtype rule, and no kernel runs. Arrays f captures become
// constants (`lambda c:f32[4] ; ...`), scalar ones literals (`mul a 2.0`). Equations print the
// primitive's name and its parameters in brackets. Not yet: grad/jvp/vjp inside the traced
// function, ops outside the table ("make_jaxpr: <op> is not in the primitive table yet"), and
// reading a traced value's data (a placeholder). The jit issue compiles this IR.
#pragma once

#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "autodiff.hpp"

namespace flaxpp {

struct Jaxpr {
  struct Var {
    int id;
    Shape shape;
    DType dtype;
  };
  struct Atom {  // an equation's input: a variable, or a scalar literal
    int var = -1;
    std::string literal;
  };
  struct Eqn {
    std::string prim, params;
    std::vector<Atom> ins;
    int out;
  };
  std::vector<Var> vars;  // by id
  std::vector<int> constvars, invars, outvars;
  std::vector<Array> consts;  // values of constvars
  std::vector<Eqn> eqns;
  std::string str() const;  // the jaxpr text, on one line
};
std::ostream& operator<<(std::ostream& os, const Jaxpr& j);

namespace jaxpr_detail {
// Opens a trace for its lifetime: placeholders for the inputs, equations for every bind.
class Trace {
 public:
  Trace();
  ~Trace();
  Trace(const Trace&) = delete;
  Trace& operator=(const Trace&) = delete;
  Array input(const Array& like);
  Jaxpr finish(const std::vector<Array>& outputs);
};
}  // namespace jaxpr_detail

// make_jaxpr(f)(args...): the jaxpr of f at the shapes and dtypes of args (arrays, vectors of
// arrays or trees; every leaf becomes an input).
template <class F>
auto make_jaxpr(F f) {
  return [f](const auto&... args) {
    jaxpr_detail::Trace trace;
    // Braced initialisation runs left to right: inputs are numbered in argument order.
    auto placeholders = std::tuple<std::remove_cvref_t<decltype(args)>...>{
        map_leaves(args, [&](const Array& a) { return trace.input(a); })...};
    auto out = std::apply(f, placeholders);
    return trace.finish(leaves_of(out));
  };
}

}  // namespace flaxpp
