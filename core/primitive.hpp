// The op author's API: how a primitive is declared once and how the transformations reach it.
// Users of grad/jvp never include this (core/autodiff.hpp is their header).
//
// A primitive is a small struct, its fields are its parameters (a reduction's axes), and one
// block holds everything about it, as JAX's autodidax registers impl/jvp/vjp rules under one
// `sin_p`:
//
//   struct Exp {                                           // core/ops_elementwise.cpp
//     const char* name() const { return "exp"; }
//     static constexpr prim::Save save = prim::Save::output;   // what the linear rules read
//     Array impl(const Array& a) const;                    // the kernel
//     prim::Aval abstract_eval(const prim::Aval& a) const; // shape/dtype rule
//     Grads vjp(const Res& r, const Array& out, const Array& g, const Need&) const;  // transpose
//     Array jvp(const Res& r, const Array& out, const Tangents& t) const;            // linearize
//     Mapped batch(const Vals<1>& x, const Dims<1>& bdim, int64_t size) const;       // vmap
//   };
//   Array jnp::exp(const Array& a) { return prim::bind(Exp{}, a); }
//
// prim::bind runs the kernel (eager evaluation: nothing else happens outside a transformation)
// and, when an input is traced by grad/vjp/jvp, records one node holding the primitive and the
// residuals its `save` asks for. backward() calls the node's vjp rule, forward() (jvp) its jvp
// rule; both rules read the same residuals (the linearisation point). When an input is batched
// by vmap, bind calls the batching rule instead of the kernel: the rule runs the primitive once
// on the whole batch. A primitive with `static constexpr bool differentiable = false` (the
// comparisons, argmax) has no vjp/jvp and is never recorded.
//
// Ops not yet in the table record a closure with autodiff::record(op, out, inputs, rule, keep);
// forward mode then transposes that closure (slower, but exact).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "array.hpp"

namespace flaxpp {

// need[i]: the cotangent of input i is wanted. A rule returns one cotangent per input, shaped
// like it (entries not needed may be left default-constructed).
using Need = std::vector<bool>;
using Grads = std::vector<Array>;

namespace prim {
// How vmap carries a batched value (core/vmap.hpp): an Array of the per-example shape whose
// node holds the whole batch, `value`, mapped along `bdim` (size `size`), for the vmap at
// nesting `level`. `value` may itself be batched at an outer level.
struct BatchPayload {
  Array value;
  int bdim = 0;
  int level = 0;
  int64_t size = 0;
};
}  // namespace prim

namespace autodiff {

// A closure vjp rule (ops outside the primitive table): given the output cotangent `g` and the
// output itself (with its node, usable in recorded expressions), one cotangent per input.
using VjpRule = std::function<Grads(const Array& g, const Array& out, const Need& need)>;
// Its optional jvp rule: the output's tangent from the inputs' tangents (only those with
// perturbed[i] set carry one; the others are zeros, or a scalar 0 for constants).
using JvpRule =
    std::function<Array(const Grads& tangents, const Need& perturbed, const Array& out)>;

// One recorded application of an op. `parents` are the inputs' nodes (null for constants).
struct Node : std::enable_shared_from_this<Node> {
  const char* op = "";
  std::vector<std::shared_ptr<Node>> parents;
  Shape shape;         // the output's shape
  Array saved_output;  // detached output value, only when the rule asked for it
  bool tape = true;    // false for a node that only carries a batch (nothing to differentiate)
  std::shared_ptr<const prim::BatchPayload> batch;  // set when the value is batched by vmap
  int ir_var = -1;  // the variable's number when make_jaxpr traces the value (core/jaxpr.hpp)

  virtual ~Node() = default;
  virtual Grads vjp(const Array& g, const Array& out, const Need& need) = 0;
  // Forward mode: the output's tangent from one tangent per parent (zeros where the parent is
  // not perturbed). The default transposes vjp, which is linear in g: J t = d/du <vjp(u), t>.
  virtual Array jvp(const Grads& tangents, const Need& perturbed, const Array& out);
  // Frees what the rules captured (a consuming backward pass runs each node once).
  virtual void release() { saved_output = Array(); }
};

// True when an op on these inputs must be recorded (recording on and some input traced).
bool is_recording();
template <class... A>
bool needs_grad(const A&... inputs) {
  return is_recording() && ((inputs.node() != nullptr) || ...);
}

// Whether a rule reads the op's output (then the node keeps it alive until the rule runs).
enum class Keep { nothing, output };

// Attaches a node for `op` to `out`. `inputs` are the op's array inputs, in the order the rule
// returns cotangents.
// Without a jvp rule, forward mode transposes `rule` (exact, but it cannot run under vmap).
Array record(const char* op, Array out, std::vector<const Array*> inputs, VjpRule rule,
             Keep keep = Keep::nothing, JvpRule jvp = nullptr);

// Turns recording off for its lifetime (the top-level backward pass).
class NoRecord {
 public:
  NoRecord();
  ~NoRecord();
  NoRecord(const NoRecord&) = delete;
  NoRecord& operator=(const NoRecord&) = delete;

 private:
  bool prev_;
};

// Turns recording on for its lifetime, whatever the enclosing pass set (a rule that traces a
// function again: checkpoint's recomputation, forward mode's transpose of a closure rule).
class RecordOn {
 public:
  RecordOn();
  ~RecordOn();
  RecordOn(const RecordOn&) = delete;
  RecordOn& operator=(const RecordOn&) = delete;

 private:
  bool prev_;
};

// Inside a consuming backward pass: `a` (a cotangent or an array a rule captured) is referenced
// by nothing else, so the rule may overwrite it with its result. Returns `a` as a writable array
// of `shape`/`dtype` if so and the byte sizes agree, else a fresh uninitialised array.
Array reusable(const Array& a, const Shape& shape, DType dtype);

// Sums `g` down to `shape` (the inverse of broadcasting), for broadcasting ops' rules.
Array unbroadcast(const Array& g, const Shape& shape);

}  // namespace autodiff

namespace prim {

// What a primitive's vjp and jvp rules read besides the shapes: its inputs (as they were passed,
// nodes included, so rules recorded under an outer grad link to them), its output, or both.
enum class Save : unsigned { nothing = 0, inputs = 1, output = 2, inputs_and_output = 3 };
constexpr bool saves(Save s, Save what) {
  return (static_cast<unsigned>(s) & static_cast<unsigned>(what)) != 0;
}

// An abstract value: what the shape/dtype rule computes without running the kernel.
struct Aval {
  Shape shape;
  DType dtype = DType::float32;
  friend bool operator==(const Aval&, const Aval&) = default;
};
template <class A>
Aval aval(const A& a) {
  return {a.shape(), a.dtype()};
}
// "(0, 2)": a tuple as a jaxpr prints an equation's parameters.
template <class V>
std::string tuple_str(const V& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + (v.size() == 1 ? ",)" : ")");
}

// The residuals a recorded primitive keeps for its linear rules.
template <size_t N>
struct Residuals {
  std::array<Array, N> in;     // the inputs, when the primitive's `save` includes inputs
  std::array<Shape, N> shape;  // the inputs' shapes, always
};

// One tangent per input: zeros shaped like the input where it is not perturbed (a scalar 0 for
// a constant), and which ones are perturbed, for rules whose other terms would turn a zero
// tangent into 0 * inf = NaN (power's log x at x < 0), as JAX's symbolic zeros avoid.
template <size_t N>
struct Tangents {
  std::array<Array, N> t;
  std::array<bool, N> perturbed{};
  const Array& operator[](size_t i) const { return t[i]; }
};

template <class P, size_t N>
struct PrimNode final : autodiff::Node {
  explicit PrimNode(const P& p) : prim(p) {}
  P prim;
  Residuals<N> res;
  Grads vjp(const Array& g, const Array& out, const Need& need) override {
    return prim.vjp(res, out, g, need);
  }
  Array jvp(const Grads& tangents, const Need& perturbed, const Array& out) override {
    Tangents<N> t;
    for (size_t i = 0; i < N; ++i) t.t[i] = tangents[i], t.perturbed[i] = perturbed[i];
    return prim.jvp(res, out, t);
  }
  void release() override {
    res = Residuals<N>{};
    saved_output = Array();
  }
};

// ---- tracing into the IR (make_jaxpr, core/jaxpr.hpp) ------------------------------------------

namespace detail {
inline thread_local int t_tracing = 0;  // make_jaxpr active on this thread
}
inline bool traced(const Array& a) { return a.node() && a.node()->ir_var >= 0; }
// Appends `name[params] ins` to the jaxpr being built; returns the output variable, shaped by
// the primitive's shape/dtype rule.
Array trace_equation(const char* name, const std::string& params, const Aval& out,
                     const std::vector<const Array*>& ins);

template <class P, class... A>
Array bind_traced(const P& p, const A&... in) {
  std::string params;
  if constexpr (requires { p.params(); }) params = p.params();
  return trace_equation(p.name(), params, p.abstract_eval(aval(in)...), {&in...});
}

// ---- batching (vmap) -------------------------------------------------------------------------

inline constexpr int not_mapped = -1;
namespace detail {
inline thread_local int t_batching_depth = 0;  // active vmaps on this thread
}
inline int batching_depth() { return detail::t_batching_depth; }
inline const BatchPayload* batched(const Array& a) {
  const auto& n = a.node();
  return n ? n->batch.get() : nullptr;
}
// An array of the per-example shape standing for `value` mapped along `bdim` at `level`.
Array wrap(Array value, int bdim, int level, int64_t size);
// `a` without its tape node (a saved output), keeping its batch.
Array untaped(const Array& a);
// x with axis `from` moved to `to` (a transpose; no copy when from == to).
Array moveaxis(const Array& x, int64_t from, int64_t to);
// Batched x (bdim d) with the batch axis first and ones inserted after it up to `rank`
// per-example axes, so that it broadcasts against unbatched operands of rank <= `rank`.
Array batch_first(const Array& x, int d, size_t rank);

// A batching rule's result: the batched output and where its batch axis is.
struct Mapped {
  Array value;
  int bdim = 0;
};
template <size_t N>
using Vals = std::array<Array, N>;
template <size_t N>
using Dims = std::array<int, N>;

// The batching rule every elementwise primitive shares: batch axes to the front, unbatched
// operands broadcast as they are, then the primitive once on the whole batch.
template <class P, size_t N>
Mapped batch_elementwise(const P& p, const Vals<N>& x, const Dims<N>& d);

template <class P>
constexpr bool is_differentiable() {
  if constexpr (requires { P::differentiable; })
    return P::differentiable;
  else
    return true;
}

// True when an op on these inputs goes on the tape (recording on, some input traced by grad).
template <class... A>
bool on_tape(const A&... in) {
  return autodiff::is_recording() && ((in.node() && in.node()->tape) || ...);
}

// Records one application of `p` on `in...` producing `out` (the tape's half of bind).
template <class P, class... A>
Array record_primitive(const P& p, Array out, const A&... in) {
  constexpr size_t N = sizeof...(A);
  auto node = std::make_shared<PrimNode<P, N>>(p);
  node->op = p.name();
  node->parents = {in.node()...};
  node->shape = out.shape();
  node->res.shape = {in.shape()...};
  if constexpr (requires { P::kept_inputs; }) {  // only some inputs (where keeps its condition)
    size_t i = 0;
    ((P::kept_inputs[i] ? (void)(node->res.in[i] = in) : (void)0, ++i), ...);
  } else if constexpr (saves(P::save, Save::inputs)) {
    node->res.in = {in...};
  }
  if (out.node()) {  // a batched output: the node carries the batch too
    node->batch = out.node()->batch;
    if constexpr (saves(P::save, Save::output)) node->saved_output = untaped(out);
  } else if constexpr (saves(P::save, Save::output)) {
    node->saved_output = out.detached();
  }
  out.set_node(std::move(node));
  return out;
}

// vmap's half of bind: the inputs batched at the innermost level are unwrapped, the batching
// rule runs the primitive once on the whole batch, and the result is wrapped again.
template <class P, class... A>
Array bind_batched(const P& p, const A&... in) {
  constexpr size_t N = sizeof...(A);
  int level = -1;
  int64_t size = 0;
  auto top = [&](const Array& a) {
    if (const BatchPayload* b = batched(a); b && b->level > level) level = b->level, size = b->size;
  };
  (top(in), ...);
  auto at_level = [&](const Array& a) {
    const BatchPayload* b = batched(a);
    return b && b->level == level ? b : nullptr;
  };
  Vals<N> vals{(at_level(in) ? at_level(in)->value : in)...};
  Dims<N> dims{(at_level(in) ? at_level(in)->bdim : not_mapped)...};
  Mapped r = p.batch(vals, dims, size);
  Array out = wrap(std::move(r.value), r.bdim, level, size);
  if constexpr (is_differentiable<P>())
    if (on_tape(in...)) return record_primitive(p, std::move(out), in...);
  return out;
}

// Applies primitive `p`: its kernel, then (inside grad/vjp/jvp, on traced inputs) the record
// that lets the transformations apply its rules; under vmap, its batching rule.
template <class P, class... A>
Array bind(const P& p, const A&... in) {
  if (batching_depth() > 0 && ((batched(in) != nullptr) || ...)) [[unlikely]]
    return bind_batched(p, in...);
  if (detail::t_tracing > 0 && (traced(in) || ...)) [[unlikely]]
    return bind_traced(p, in...);
  Array out = p.impl(in...);
  if constexpr (is_differentiable<P>())
    if (on_tape(in...)) return record_primitive(p, std::move(out), in...);
  return out;
}

template <class P, size_t N>
Mapped batch_elementwise(const P& p, const Vals<N>& x, const Dims<N>& d) {
  if constexpr (N == 1) {
    return {bind(p, x[0]), d[0]};
  } else {
    size_t rank = 0;
    for (size_t i = 0; i < N; ++i) rank = std::max(rank, x[i].ndim() - (d[i] != not_mapped));
    Vals<N> y;
    for (size_t i = 0; i < N; ++i) y[i] = d[i] == not_mapped ? x[i] : batch_first(x[i], d[i], rank);
    return {std::apply([&](const auto&... a) { return bind(p, a...); }, y), 0};
  }
}

// The names the files that declare primitives (core/ops_*.cpp) use in their blocks, in one
// place: `using namespace prim::authoring;` at the top of such a file.
namespace authoring {
using autodiff::unbroadcast;
using prim::Aval;
using prim::bind;
using prim::Dims;
using prim::Mapped;
using prim::Save;
using prim::Vals;
template <size_t N>
using Res = prim::Residuals<N>;
template <size_t N>
using Tan = prim::Tangents<N>;
}  // namespace authoring

}  // namespace prim
}  // namespace flaxpp
