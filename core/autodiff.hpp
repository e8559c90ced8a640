// Reverse-mode autodiff, functional like JAX: grad, value_and_grad, vjp, jvp.
//
//   auto f = [](const Array& x) { return jnp::sum(jnp::tanh(x)); };
//   Array g = grad(f)(x);                                   // df/dx, same shape as x
//   auto [v, gw] = value_and_grad(loss)(w, batch);          // w.r.t. argument 0
//   auto [gw, gb] = grad<0, 1>(loss2)(w, b, batch);         // several arguments -> std::tuple
//   auto [v, aux, gw] = value_and_grad(loss_with_aux, has_aux)(w);  // f returns {value, aux}
//   auto [y, pullback] = vjp(f, x);  auto [dx] = pullback(ct);
//   auto [y, ydot] = jvp(f, x, v);                          // forward mode (jvp rules)
//   auto [y2, ydot2] = jvp(g, std::tuple{x, w}, std::tuple{v, u});  // several arguments
//   Array hvp = grad([&](const Array& x) { return jnp::vdot(grad(f)(x), v); })(x);
//
// Differentiable arguments are Array, std::vector<Array>, and any type with a
// Differentiable<T> specialisation (parameter trees, core/tree.hpp). The function must return a
// float32 scalar for grad/value_and_grad (as JAX). Non-float leaves are an error.
//
// How it works: inside a transformation every float Array produced from a traced input carries
// a Node (the primitive and the residuals its rules read; core/primitive.hpp). backward runs the
// nodes' vjp rules from the output down, forward (jvp) their jvp rules from the inputs up.
// The rules are written with the same primitives,
// so when an enclosing grad is active the backward pass is itself recorded and can be
// differentiated again. A top-level grad records nothing during its backward pass, and every
// result it returns is detached, so the whole graph is freed when it returns.
#pragma once

#include <concepts>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "array.hpp"

namespace flaxpp {

namespace autodiff {

// Depth of active transformations (0 outside any grad/vjp).
int trace_depth();
class TraceScope {
 public:
  TraceScope();
  ~TraceScope();
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;
};

// A fresh traced leaf with the value of x (identity of x's own node, if any). `what` names the
// transformation for the error thrown on non-float input.
Array trace_leaf(const Array& x, const char* what);

// The reverse pass: seeds each output with its cotangent and returns the cotangent reaching
// each target leaf (zeros where none does). Records the backward computation only when
// `record_backward` is set (an enclosing transformation will differentiate it).
// With `consume`, the graph is run once and torn down as it goes: each node's rule (and the
// activations it captured) is released right after it runs, so memory falls during the pass, and
// rules may write their results into buffers nothing else references (see reusable). grad and
// value_and_grad at the top level consume; vjp's pullback, which may be called again, does not.
std::vector<Array> backward(const std::vector<Array>& outputs, const std::vector<Array>& seeds,
                            const std::vector<Array>& targets, bool record_backward,
                            bool consume = false);

// Forward mode: the tangent of each output given one tangent per leaf (trace_leaf results),
// running every recorded node's jvp rule from the leaves up. Records the tangent computation
// only when `record` is set (an enclosing transformation will differentiate it).
std::vector<Array> forward(const std::vector<Array>& outputs, const std::vector<Array>& leaves,
                           const std::vector<Array>& tangents, bool record);

// Zeros with a's shape and dtype, untraced.
Array zeros_like_value(const Array& a);
// sum_i vdot(a[i], b[i]) (used by jvp).
Array vdot_all(const std::vector<Array>& a, const std::vector<Array>& b);

}  // namespace autodiff

// ---- which argument types are differentiable ------------------------------------------------
template <class T>
struct Differentiable;

template <>
struct Differentiable<Array> {
  static void flatten(const Array& x, std::vector<Array>& out) { out.push_back(x); }
  static Array unflatten(const Array&, const Array*& it) { return *it++; }
};

template <>
struct Differentiable<std::vector<Array>> {
  static void flatten(const std::vector<Array>& x, std::vector<Array>& out) {
    out.insert(out.end(), x.begin(), x.end());
  }
  static std::vector<Array> unflatten(const std::vector<Array>& like, const Array*& it) {
    std::vector<Array> r(it, it + like.size());
    it += like.size();
    return r;
  }
};

template <class T>
concept DifferentiableType = requires(const T& x, std::vector<Array>& v, const Array*& it) {
  Differentiable<std::remove_cvref_t<T>>::flatten(x, v);
  {
    Differentiable<std::remove_cvref_t<T>>::unflatten(x, it)
    } -> std::convertible_to<std::remove_cvref_t<T>>;
};

template <class T>
std::vector<Array> leaves_of(const T& x) {
  std::vector<Array> v;
  Differentiable<std::remove_cvref_t<T>>::flatten(x, v);
  return v;
}
template <class T>
std::remove_cvref_t<T> rebuild_like(const T& like, const std::vector<Array>& leaves) {
  const Array* it = leaves.data();
  return Differentiable<std::remove_cvref_t<T>>::unflatten(like, it);
}
// Applies `fn` to every leaf (e.g. detaching), keeping the structure.
template <class T, class Fn>
std::remove_cvref_t<T> map_leaves(const T& x, Fn fn) {
  auto v = leaves_of(x);
  for (auto& a : v) a = fn(a);
  return rebuild_like(x, v);
}

struct HasAux {};
inline constexpr HasAux has_aux{};

namespace autodiff::detail {

template <size_t I, size_t... Is>
constexpr bool contains() {
  return ((I == Is) || ...);
}

template <class T>
const T& unwrap(const std::reference_wrapper<const T>& r) {
  return r.get();
}
template <class T>
const T& unwrap(const T& x) {
  return x;
}

template <class T>
auto detach_all(const T& x) {
  if constexpr (DifferentiableType<T>)
    return map_leaves(x, [](const Array& a) { return a.detached(); });
  else
    return x;
}

template <class Out>
Array scalar_output(const Out& out, const char* what) {
  if (out.ndim() != 0 || !out.is_float())
    throw std::invalid_argument(std::string(what) +
                                ": the function must return a float32 scalar, got shape " +
                                to_string(out.shape()) + " dtype " + dtype_name(out.dtype()));
  return out;
}

// Runs f on args with arguments Argnums traced; returns (value-or-pair, grads tuple).
template <bool Aux, size_t... Argnums, class F, class... Args>
auto value_and_grad_impl(const char* what, const F& f, const Args&... args) {
  static_assert(sizeof...(Argnums) > 0);
  auto inputs = std::forward_as_tuple(args...);
  std::vector<Array> targets;
  auto traced = [&]<size_t I>(std::integral_constant<size_t, I>) {
    const auto& a = std::get<I>(inputs);
    using A = std::remove_cvref_t<decltype(a)>;
    if constexpr (contains<I, Argnums...>()) {
      static_assert(DifferentiableType<A>, "grad: argument type is not differentiable");
      auto leaves = leaves_of(a);
      for (auto& l : leaves) {
        l = trace_leaf(l, what);
        targets.push_back(l);
      }
      return rebuild_like(a, leaves);
    } else {
      return std::cref(a);
    }
  };
  auto result = [&]<size_t... I>(std::index_sequence<I...>) {
    TraceScope scope;
    auto targs = std::make_tuple(traced(std::integral_constant<size_t, I>{})...);
    return std::apply([&](const auto&... t) { return f(unwrap(t)...); }, targs);
  }
  (std::index_sequence_for<Args...>{});
  Array value;
  if constexpr (Aux)
    value = scalar_output(result.first, what);
  else
    value = scalar_output(result, what);
  bool nested = trace_depth() > 0;
  auto cts = backward({value}, {Array(1.f)}, targets, nested, /*consume=*/!nested);
  if (!nested)
    for (auto& c : cts) c = c.detached();
  // Split the cotangents back into one structure per differentiated argument.
  size_t pos = 0;
  auto grad_of = [&]<size_t I>(std::integral_constant<size_t, I>) {
    const auto& a = std::get<I>(inputs);
    auto n = leaves_of(a).size();
    std::vector<Array> part(cts.begin() + pos, cts.begin() + pos + n);
    pos += n;
    return rebuild_like(a, part);
  };
  auto grads = std::make_tuple(grad_of(std::integral_constant<size_t, Argnums>{})...);
  if constexpr (Aux) {
    auto aux = nested ? result.second : detach_all(result.second);
    return std::make_tuple(nested ? value : value.detached(), std::move(aux), std::move(grads));
  } else {
    return std::make_pair(nested ? value : value.detached(), std::move(grads));
  }
}

template <class Tuple>
auto single_or_tuple(Tuple&& t) {
  if constexpr (std::tuple_size_v<std::remove_cvref_t<Tuple>> == 1)
    return std::get<0>(std::forward<Tuple>(t));
  else
    return std::forward<Tuple>(t);
}

}  // namespace autodiff::detail

// grad(f): gradient w.r.t. argument 0. grad<I, J, ...>(f): w.r.t. those arguments, as a tuple.
template <size_t... Argnums, class F>
auto grad(F f) {
  return [f](const auto&... args) {
    if constexpr (sizeof...(Argnums) == 0)
      return autodiff::detail::single_or_tuple(
          autodiff::detail::value_and_grad_impl<false, 0>("grad", f, args...).second);
    else
      return autodiff::detail::single_or_tuple(
          autodiff::detail::value_and_grad_impl<false, Argnums...>("grad", f, args...).second);
  };
}

// value_and_grad(f)(args...) -> {value, grad}; with has_aux, f returns {value, aux} and the
// result is {value, aux, grad} (a std::tuple).
template <size_t... Argnums, class F>
auto value_and_grad(F f) {
  return [f](const auto&... args) {
    auto run = [&]<size_t... Is>() {
      auto [v, g] =
          autodiff::detail::value_and_grad_impl<false, Is...>("value_and_grad", f, args...);
      return std::make_pair(v, autodiff::detail::single_or_tuple(std::move(g)));
    };
    if constexpr (sizeof...(Argnums) == 0)
      return run.template operator()<0>();
    else
      return run.template operator()<Argnums...>();
  };
}
template <size_t... Argnums, class F>
auto value_and_grad(F f, HasAux) {
  return [f](const auto&... args) {
    auto run = [&]<size_t... Is>() {
      auto [v, aux, g] =
          autodiff::detail::value_and_grad_impl<true, Is...>("value_and_grad", f, args...);
      return std::make_tuple(v, std::move(aux), autodiff::detail::single_or_tuple(std::move(g)));
    };
    if constexpr (sizeof...(Argnums) == 0)
      return run.template operator()<0>();
    else
      return run.template operator()<Argnums...>();
  };
}

// vjp(f, x...) -> {y, pullback}; pullback(ct) returns a std::tuple with one cotangent per x.
// y may be any differentiable structure; ct must have the same structure.
template <class F, class... Args>
auto vjp(F f, const Args&... args) {
  std::vector<Array> targets;
  auto trace_arg = [&](const auto& a) {
    auto leaves = leaves_of(a);
    for (auto& l : leaves) {
      l = autodiff::trace_leaf(l, "vjp");
      targets.push_back(l);
    }
    return rebuild_like(a, leaves);
  };
  auto out = [&] {
    autodiff::TraceScope scope;
    auto traced = std::make_tuple(trace_arg(args)...);
    return std::apply(f, traced);
  }();
  using Out = decltype(out);
  static_assert(DifferentiableType<Out>, "vjp: the function must return a differentiable value");
  auto out_leaves = leaves_of(out);
  auto likes = std::make_tuple(args...);
  auto pullback = [out_leaves, targets, likes, out](const Out& ct) {
    auto seeds = leaves_of(ct);
    if (seeds.size() != out_leaves.size())
      throw std::invalid_argument("vjp pullback: cotangent structure differs from the output");
    bool record = autodiff::trace_depth() > 0;
    for (size_t i = 0; i < seeds.size(); ++i) {
      if (seeds[i].shape() != out_leaves[i].shape())
        throw std::invalid_argument("vjp pullback: cotangent shape " + to_string(seeds[i].shape()) +
                                    " differs from output shape " +
                                    to_string(out_leaves[i].shape()));
      if (out_leaves[i].is_float() && !seeds[i].is_float())  // JAX: a float32 output's is float32
        throw std::invalid_argument(std::string("vjp pullback: cotangent dtype ") +
                                    dtype_name(seeds[i].dtype()) + ", the output is " +
                                    dtype_name(out_leaves[i].dtype()) + "; it must be float32");
      record = record || seeds[i].node();
    }
    auto cts = autodiff::backward(out_leaves, seeds, targets, record);
    if (!record)
      for (auto& c : cts) c = c.detached();
    size_t pos = 0;
    return std::apply(
        [&](const auto&... like) {
          auto part = [&](const auto& l) {
            auto n = leaves_of(l).size();
            std::vector<Array> p(cts.begin() + pos, cts.begin() + pos + n);
            pos += n;
            return rebuild_like(l, p);
          };
          return std::tuple<std::remove_cvref_t<decltype(like)>...>{part(like)...};
        },
        likes);
  };
  bool nested = autodiff::trace_depth() > 0;
  Out primal = nested ? out : autodiff::detail::detach_all(out);
  return std::make_pair(primal, std::function<std::tuple<Args...>(const Out&)>(pullback));
}

namespace autodiff::detail {

// Traces f at the primals, then runs the recorded nodes' jvp rules from the tangents up.
template <class F, class... X, size_t... I>
auto jvp_impl(const F& f, const std::tuple<X...>& primals, const std::tuple<X...>& tangents,
              std::index_sequence<I...>) {
  std::vector<Array> leaves, dots;
  auto trace_arg = [&](const auto& x, const auto& t) {
    auto xs = leaves_of(x), ts = leaves_of(t);
    if (xs.size() != ts.size())
      throw std::invalid_argument("jvp: tangent structure differs from the primal's");
    for (size_t k = 0; k < xs.size(); ++k) {
      if (xs[k].shape() != ts[k].shape() || xs[k].dtype() != ts[k].dtype())
        throw std::invalid_argument(std::string("jvp: tangent ") + dtype_name(ts[k].dtype()) +
                                    to_string(ts[k].shape()) + " differs from primal " +
                                    dtype_name(xs[k].dtype()) + to_string(xs[k].shape()));
      xs[k] = trace_leaf(xs[k], "jvp");
      leaves.push_back(xs[k]);
      dots.push_back(ts[k]);
    }
    return rebuild_like(x, xs);
  };
  bool nested = trace_depth() > 0;
  auto out = [&] {
    TraceScope scope;
    auto traced = std::make_tuple(trace_arg(std::get<I>(primals), std::get<I>(tangents))...);
    return std::apply(f, traced);
  }();
  using Out = decltype(out);
  static_assert(DifferentiableType<Out>, "jvp: the function must return a differentiable value");
  auto ys = leaves_of(out);
  auto ydots = forward(ys, leaves, dots, /*record=*/nested);
  if (!nested) {
    for (auto& y : ys) y = y.detached();
    for (auto& d : ydots) d = d.detached();
  }
  return std::make_pair(rebuild_like(out, ys), rebuild_like(out, ydots));
}

}  // namespace autodiff::detail

// jvp(f, x, v) -> {f(x), J v}: forward mode, every primitive's jvp rule applied once from the
// inputs up (jax.jvp). x and v have the same structure (an Array, a vector or a tree).
template <class F, class X>
requires DifferentiableType<X>
auto jvp(F f, const X& x, const X& v) {
  return autodiff::detail::jvp_impl(f, std::tuple<X>(x), std::tuple<X>(v),
                                    std::index_sequence<0>{});
}
// jvp(f, {x0, x1, ...}, {v0, v1, ...}): several arguments, as jax.jvp's tuples of primals and
// tangents; f takes them as separate arguments.
template <class F, class... X>
auto jvp(F f, const std::tuple<X...>& primals, const std::tuple<X...>& tangents) {
  return autodiff::detail::jvp_impl(f, primals, tangents, std::index_sequence_for<X...>{});
}

}  // namespace flaxpp
