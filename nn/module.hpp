// Flax's module system (flax.linen): init / apply, parameters, rng streams, submodule names.
//
//   struct MLP : nn::Module<MLP> {                       // class MLP(nn.Module):
//     std::vector<int64_t> features;                     //   features: Sequence[int]
//     Array operator()(nn::Scope& s, Array x) const {    //   @nn.compact def __call__(self, x):
//       for (size_t i = 0; i + 1 < features.size(); ++i)
//         x = nn::relu(s(nn::Dense{.features = features[i]}, x));   // autonamed Dense_0, Dense_1
//       return s(nn::Dense{.features = features.back()}, x);
//     }
//   };
//   Tree variables = MLP{.features = {3, 4, 5}}.init(random::PRNGKey(0), x);   // {"params": ...}
//   Array y = MLP{.features = {3, 4, 5}}.apply(variables, x);
//   Array y2 = model.apply(variables, x, nn::Rngs{{"dropout", key}});           // rng streams
//   auto [y3, updates] = model.apply(variables, x, nn::Mutable{"batch_stats"});  // mutable collections
//
// A module is a plain struct of hyper-parameters (Flax's field names and defaults) deriving from
// nn::Module<Self>, with `operator()(Scope&, inputs...) const`. Inside it:
//   s.param(name, init, shape)          declares (init) or reads (apply) a parameter
//   s.make_rng(stream)                  a fresh key from an rng stream
//   s(Sub{...}, args...)                calls a submodule autonamed "<Class>_<n>" (per class, per
//                                       parent, counted afresh on every call, as @nn.compact)
//   s.call("name", Sub{...}, args...)   an explicitly named submodule (Flax's setup attributes);
//   s.child("name", Sub{...})           a handle that can be called several times (shared params)
//   s.call("layers", i, Sub{...}, x)    list entries, named layers_0, layers_1, ... as Flax does
// The root module has the empty path. Names are unique per call: using a parameter or child
// name twice in one call throws.
//
// Keys follow Flax exactly under the chosen compatibility profile (nn::Compat, default
// `current`); see nn/rng.hpp. Errors name the module path, e.g.
//   "Dense_0 (Dense): parameter 'kernel' has shape (3,4) in the variables; the module expects (4,4)".
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/array.hpp"
#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tree.hpp"
#include "initializers.hpp"
#include "rng.hpp"
#include "summary.hpp"

namespace flaxpp::nn {

using initializers::Initializer;

// rng streams for init/apply: {"params": k, "dropout": k2}. A bare key means {"params": key}.
struct Rngs : std::map<std::string, random::Key> {
  using std::map<std::string, random::Key>::map;
  Rngs() = default;
  Rngs(random::Key params_key) { emplace("params", params_key); }  // NOLINT: as Flax
};
// Collections apply may write to; apply then returns {output, updated collections}.
struct Mutable : std::vector<std::string> {
  using std::vector<std::string>::vector;
};

// A module misused: the message starts with the module path (core/error.hpp: the family).
class ModuleError : public Error {
 public:
  using Error::Error;
};

namespace detail {
struct Frame;
struct Context;
struct RunAccess;
std::string demangle_type_name(const char* mangled);  // "flaxpp::nn::Dense" -> "Dense"

template <class M>
std::string type_name_of(const M& m) {
  if constexpr (requires { m.type_name(); })
    return m.type_name();
  else
    return demangle_type_name(typeid(M).name());
}
bool is_tabulating(const Context* ctx);
}  // namespace detail

template <class M>
class Bound;

class Scope {
 public:
  Scope(detail::Context* ctx, detail::Frame* frame) : ctx_(ctx), frame_(frame) {}

  // Flax's self.param: created with init(make_rng("params"), shape, dtype) during init, read
  // (and shape-checked) during apply.
  Array param(const std::string& name, const Initializer& init, const Shape& shape,
              DType dtype = DType::float32);
  // Flax's self.variable in another collection, e.g. "batch_stats". Returns its current value,
  // creating it with init() when the collection is mutable and it does not exist yet.
  Array variable(const std::string& collection, const std::string& name,
                 const std::function<Array()>& init);
  // Writes a variable of a mutable collection (throws naming the collection otherwise).
  void put_variable(const std::string& collection, const std::string& name, const Array& value);
  bool has_variable(const std::string& collection, const std::string& name) const;

  random::Key make_rng(const std::string& stream);
  bool has_rng(const std::string& stream) const;
  bool is_initializing() const;
  Compat compat() const;
  // '/'-joined path from the root ("" for the root) and the module's class name.
  std::string path() const;
  const std::string& type_name() const;
  // "layers_0/norm (LayerNorm)": how errors name this module.
  std::string where() const;
  [[noreturn]] void fail(const std::string& message) const;

  template <class M, class... A>
  auto operator()(const M& module, const A&... args);
  template <class M, class... A>
  auto call(const std::string& name, const M& module, const A&... args);
  template <class M, class... A>
  auto call(const std::string& list_name, size_t index, const M& module, const A&... args) {
    return call(list_name + "_" + std::to_string(index), module, args...);
  }
  template <class M>
  Bound<M> child(const std::string& name, const M& module);

 private:
  template <class M>
  friend class Bound;
  friend struct detail::RunAccess;
  // Reserves `name` in the current call and returns its (persistent) frame.
  detail::Frame* open_child(const std::string& name, const std::string& type_name);
  std::string autoname(const std::string& type_name);
  // Marks the start and end of one call of the module in `frame` (tabulate rows, name resets).
  size_t begin_call(detail::Frame* frame, std::string inputs);
  void end_call(size_t row, std::string outputs);

  detail::Context* ctx_;
  detail::Frame* frame_;
};

// A named submodule bound to its parent scope; calling it again reuses its parameters.
template <class M>
class Bound {
 public:
  Bound(detail::Context* ctx, detail::Frame* frame, M module)
      : ctx_(ctx), frame_(frame), module_(std::move(module)) {}
  template <class... A>
  auto operator()(const A&... args) const {
    return invoke([&](Scope& s) { return module_(s, args...); }, args...);
  }
  // Calls another method of the module in its scope, e.g. Embed::attend.
  template <class R, class... P, class... A>
  R method(R (M::*fn)(Scope&, P...) const, const A&... args) const {
    return invoke([&](Scope& s) -> R { return (module_.*fn)(s, args...); }, args...);
  }

 private:
  // One call in the child's scope: a tabulate row around `body` when tabulating.
  template <class Body, class... A>
  auto invoke(Body body, const A&... args) const {
    Scope child(ctx_, frame_);
    size_t row =
        child.begin_call(frame_, tabulating() ? detail::describe_all(args...) : std::string());
    auto out = body(child);
    child.end_call(row, tabulating() ? detail::describe(out) : std::string());
    return out;
  }
  bool tabulating() const { return detail::is_tabulating(ctx_); }
  detail::Context* ctx_;
  detail::Frame* frame_;
  M module_;
};

template <class M>
Bound<M> Scope::child(const std::string& name, const M& module) {
  return Bound<M>(ctx_, open_child(name, detail::type_name_of(module)), module);
}

template <class M, class... A>
auto Scope::call(const std::string& name, const M& module, const A&... args) {
  return child(name, module)(args...);
}

template <class M, class... A>
auto Scope::operator()(const M& module, const A&... args) {
  return call(autoname(detail::type_name_of(module)), module, args...);
}

// ---- init / apply ---------------------------------------------------------------------------

struct RunOptions {
  Rngs rngs;
  std::optional<Compat> compat;  // default: nn::default_compat()
  std::optional<Mutable> mutable_collections;
  bool tabulate = false;
  std::string root_inputs;  // tabulate's description of the root call's inputs
};

namespace detail {

// Runs `body(root_scope)` with the variables and options; returns the written variables.
struct RunResult {
  Tree variables;  // init: everything; apply with Mutable: the mutable collections
  std::string table;
};
// Whether a run creates variables (Flax's init) or reads them (apply).
enum class Mode { init, apply };
// `body` runs the root module and returns tabulate's description of its output.
RunResult run(const std::string& root_type, const Tree* variables, const RunOptions& options,
              Mode mode, const std::function<std::string(Scope&)>& body);

template <class T>
constexpr bool is_option_v = std::is_same_v<T, Rngs> || std::is_same_v<T, random::Key> ||
                             std::is_same_v<T, Mutable> || std::is_same_v<T, Compat>;

inline void take_option(RunOptions& o, const Rngs& r) {
  for (auto& [k, v] : r) o.rngs[k] = v;
}
inline void take_option(RunOptions& o, const random::Key& k) { o.rngs["params"] = k; }
inline void take_option(RunOptions& o, const Mutable& m) { o.mutable_collections = m; }
inline void take_option(RunOptions& o, const Compat& c) { o.compat = c; }

// Splits a call's arguments into options (Rngs, Mutable, Compat) and module inputs.
template <class... A>
auto split_args(RunOptions& opts, const A&... args) {
  [[maybe_unused]] auto pick = [&](const auto& a) {  // unused when there are no args
    using T = std::remove_cvref_t<decltype(a)>;
    if constexpr (is_option_v<T>) {
      take_option(opts, a);
      return std::tuple<>{};
    } else {
      return std::tuple<const T&>{a};
    }
  };
  return std::tuple_cat(pick(args)...);
}

template <class M, class Tuple>
struct call_result;
template <class M, class... T>
struct call_result<M, std::tuple<T...>> {
  using type = std::invoke_result_t<const M&, Scope&, T...>;
};

}  // namespace detail

template <class Derived>
struct Module {
  // Flax's Module.init(rngs, *args): the variables {"params": {...}, ...}. `rngs` is a key or
  // Rngs; trailing Compat is allowed.
  template <class... A>
  Tree init(const Rngs& rngs, const A&... args) const {
    return init_with_output(rngs, args...).second;
  }
  template <class... A>
  auto init_with_output(const Rngs& rngs, const A&... args) const {
    return run_init(rngs, call_operator(), args...);
  }
  // Flax's Module.apply(variables, *args, rngs=..., mutable=...). Options (Rngs, Mutable,
  // Compat) may appear anywhere among the arguments. With Mutable, returns {out, updates}.
  template <class... A>
  auto apply(const Tree& variables, const A&... args) const {
    return run_apply(variables, call_operator(), args...);
  }
  // Flax's method= argument: init or apply through another method of the module, e.g.
  //   Tree v = model.init(key, &AutoEncoder::encode, x);       // only encode's parameters
  //   Array z = model.apply(variables, &AutoEncoder::encode, x);
  // The method runs in the root scope, as operator() does; options go among the arguments.
  template <class R, class... P, class... A>
  Tree init(const Rngs& rngs, R (Derived::*fn)(Scope&, P...) const, const A&... args) const {
    return run_init(rngs, call_method(fn), args...).second;
  }
  template <class R, class... P, class... A>
  auto apply(const Tree& variables, R (Derived::*fn)(Scope&, P...) const, const A&... args) const {
    return run_apply(variables, call_method(fn), args...);
  }
  // Flax's nn.tabulate / Module.tabulate: a table of every module call with its inputs,
  // outputs and parameters (count and bytes), from an init run.
  template <class... A>
  std::string tabulate(const Rngs& rngs, const A&... args) const {
    RunOptions opts;
    opts.rngs = rngs;
    opts.tabulate = true;
    auto inputs = detail::split_args(opts, args...);
    opts.root_inputs =
        std::apply([](const auto&... in) { return detail::describe_all(in...); }, inputs);
    return run_root(nullptr, detail::Mode::init, opts, call_operator(), inputs).second.table;
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
  template <class... A>
  static constexpr bool returns_updates() {
    return (std::is_same_v<std::remove_cvref_t<A>, Mutable> || ...);
  }
  // What the root call runs: operator() or another method, on the scope and the inputs.
  auto call_operator() const {
    return [this](Scope& s, const auto&... in) { return self()(s, in...); };
  }
  template <class R, class... P>
  auto call_method(R (Derived::*fn)(Scope&, P...) const) const {
    return [this, fn](Scope& s, const auto&... in) -> R { return (self().*fn)(s, in...); };
  }
  // The one body of init, apply and tabulate: runs `target(root_scope, inputs...)` and returns
  // {its output, the run's result}.
  template <class Target, class Inputs>
  auto run_root(const Tree* variables, detail::Mode mode, const RunOptions& opts,
                const Target& target, const Inputs& inputs) const {
    auto call = [&](Scope& s) {
      return std::apply([&](const auto&... in) { return target(s, in...); }, inputs);
    };
    using Out = std::invoke_result_t<decltype(call)&, Scope&>;
    std::optional<Out> out;
    auto result = detail::run(detail::type_name_of(self()), variables, opts, mode, [&](Scope& s) {
      out.emplace(call(s));
      return opts.tabulate ? detail::describe(*out) : std::string();
    });
    return std::make_pair(std::move(*out), std::move(result));
  }
  template <class Target, class... A>
  auto run_init(const Rngs& rngs, const Target& target, const A&... args) const {
    RunOptions opts;
    opts.rngs = rngs;
    auto inputs = detail::split_args(opts, args...);
    auto [out, result] = run_root(nullptr, detail::Mode::init, opts, target, inputs);
    return std::make_pair(std::move(out), std::move(result.variables));
  }
  template <class Target, class... A>
  auto run_apply(const Tree& variables, const Target& target, const A&... args) const {
    RunOptions opts;
    auto inputs = detail::split_args(opts, args...);
    auto [out, result] = run_root(&variables, detail::Mode::apply, opts, target, inputs);
    if constexpr (returns_updates<A...>())
      return std::make_pair(std::move(out), std::move(result.variables));
    else
      return std::move(out);
  }
};

// Type-erased Array -> Array module, for lists of heterogeneous layers (Sequential, Residual).
// Also holds plain functions (nn::relu), which have no scope and are applied as they are.
class AnyModule : public Module<AnyModule> {
 public:
  template <class M>
  requires(!std::is_same_v<std::remove_cvref_t<M>, AnyModule> &&
           std::is_invocable_r_v<Array, const M&, Scope&, const Array&>)
      AnyModule(M module)  // NOLINT: implicit, so {Dense{...}, LayerNorm{}} builds a list
      : name_(detail::type_name_of(module)),
        fn_(std::make_shared<Fn>(
            [m = std::move(module)](Scope& s, const Array& x) -> Array { return m(s, x); })) {}
  AnyModule(Array (*function)(const Array&))  // NOLINT: a plain function such as nn::relu
      : name_("function"), plain_(function) {}

  Array operator()(Scope& s, const Array& x) const {
    if (plain_) return plain_(x);
    return (*fn_)(s, x);
  }
  const std::string& type_name() const { return name_; }
  bool is_function() const { return plain_ != nullptr; }
  Array call_function(const Array& x) const { return plain_(x); }

 private:
  using Fn = std::function<Array(Scope&, const Array&)>;
  std::string name_;
  std::shared_ptr<const Fn> fn_;
  Array (*plain_)(const Array&) = nullptr;
};

}  // namespace flaxpp::nn
