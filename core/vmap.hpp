// vmap: vectorising map (jax.vmap), a batching interpreter over the primitive table.
//
//   auto f = [](const Array& x, const Array& w) { return jnp::sum(x * w); };
//   Array ys = vmap(f)(xs, ws);                       // maps axis 0 of every argument
//   Array zs = vmap(f, {0, none})(xs, w);             // w is shared by every example
//   Array ts = vmap(f, {1, none}, {0})(xs_t, w);      // map axis 1 of xs_t; result axis 0
//   Tree per_example = vmap(grad(loss), {none, 0, 0})(params, xs, labels);  // per-example grads
//   Array m = vmap(vmap(f))(xss, wss);                // nested: two batch axes
//
// in_axes: one entry per argument, an axis (negative counts from the end) or `none`; the axis
// applies to every leaf of a tree or vector argument. out_axes: one entry for every output
// leaf, or one per leaf. An output that does not depend on a mapped argument is broadcast.
// Errors: sizes of mapped axes differ -> "vmap got inconsistent sizes for array axes to be
// mapped: ..."; an axis out of range; a primitive without a batching rule ->
// "vmap: no batching rule for <prim> yet" (never a silent per-example loop).
//
// How it works: a batched value is an Array of the per-example shape whose node holds the whole
// batch (core/primitive.hpp, prim::BatchPayload). prim::bind sees it and runs the primitive's
// batching rule: the primitive runs once on the batched operands. Reading the data of a batched
// value inside f (item(), data<float>()) is not supported: it would read a placeholder.
#pragma once

#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "autodiff.hpp"

namespace flaxpp {

struct None {};
inline constexpr None none{};  // jax.vmap's in_axes=None: the argument is not mapped

// An entry of in_axes/out_axes: an axis, or none.
struct MapAxis {
  std::optional<int64_t> axis;
  MapAxis(int a) : axis(a) {}  // NOLINT: in_axes = {0, 1}
  MapAxis(None) {}             // NOLINT: in_axes = {0, none}
};

namespace vmap_detail {

// Opens one vmap level for its lifetime (and a trace scope: grads inside record backward).
class Level {
 public:
  Level();
  ~Level();
  Level(const Level&) = delete;
  Level& operator=(const Level&) = delete;
  int level() const { return level_; }

 private:
  int level_;
  autodiff::TraceScope scope_;
};

int64_t mapped_size(const Array& x, int64_t axis);  // checks the axis, returns its size
Array map_leaf(const Array& x, int64_t axis, int level, int64_t size);
Array unmap_leaf(const Array& y, std::optional<int64_t> axis, int level, int64_t size);
[[noreturn]] void inconsistent(const std::vector<std::pair<int64_t, int64_t>>& sizes);

template <class F, class... Args>
auto call(const F& f, const std::vector<MapAxis>& in_axes, const std::vector<MapAxis>& out_axes,
          const Args&... args) {
  if (!in_axes.empty() && in_axes.size() != sizeof...(Args))
    throw std::invalid_argument("vmap: in_axes has " + std::to_string(in_axes.size()) +
                                " entries for " + std::to_string(sizeof...(Args)) + " arguments");
  // The batch size, from every mapped leaf (they must agree).
  std::vector<std::pair<int64_t, int64_t>> sizes;  // (axis, size) per mapped leaf
  size_t i = 0;
  auto measure = [&](const auto& a) {
    std::optional<int64_t> axis = in_axes.empty() ? std::optional<int64_t>(0) : in_axes[i].axis;
    ++i;
    if constexpr (DifferentiableType<decltype(a)>) {
      if (axis)
        for (const Array& l : leaves_of(a)) sizes.push_back({*axis, mapped_size(l, *axis)});
    } else if (axis) {
      throw std::invalid_argument("vmap: a non-array argument must have in_axes none");
    }
  };
  (measure(args), ...);
  if (sizes.empty())
    throw std::invalid_argument("vmap must have at least one non-none value in in_axes");
  for (auto& s : sizes)
    if (s.second != sizes[0].second) inconsistent(sizes);
  int64_t size = sizes[0].second;

  Level lv;
  auto wrap_arg = [&]<size_t I>(std::integral_constant<size_t, I>, const auto& a) {
    std::optional<int64_t> axis = in_axes.empty() ? std::optional<int64_t>(0) : in_axes[I].axis;
    using A = std::remove_cvref_t<decltype(a)>;
    if constexpr (DifferentiableType<A>) {
      if (!axis) return a;
      return map_leaves(a, [&](const Array& l) { return map_leaf(l, *axis, lv.level(), size); });
    } else {
      return a;
    }
  };
  auto wrapped = [&]<size_t... I>(std::index_sequence<I...>) {
    return std::make_tuple(wrap_arg(std::integral_constant<size_t, I>{}, args)...);
  }
  (std::index_sequence_for<Args...>{});
  auto out = std::apply(f, wrapped);
  using Out = decltype(out);
  static_assert(DifferentiableType<Out>, "vmap: the function must return arrays");
  auto ys = leaves_of(out);
  if (out_axes.size() != 1 && out_axes.size() != ys.size())
    throw std::invalid_argument("vmap: out_axes has " + std::to_string(out_axes.size()) +
                                " entries for " + std::to_string(ys.size()) + " outputs");
  for (size_t k = 0; k < ys.size(); ++k)
    ys[k] = unmap_leaf(ys[k], out_axes[out_axes.size() == 1 ? 0 : k].axis, lv.level(), size);
  return rebuild_like(out, ys);
}

}  // namespace vmap_detail

// vmap(f)(args...) maps axis 0 of every argument; vmap(f, in_axes, out_axes) as jax.vmap.
template <class F>
auto vmap(F f, std::vector<MapAxis> in_axes = {}, std::vector<MapAxis> out_axes = {0}) {
  return [f, in_axes, out_axes](const auto&... args) {
    return vmap_detail::call(f, in_axes, out_axes, args...);
  };
}

}  // namespace flaxpp
