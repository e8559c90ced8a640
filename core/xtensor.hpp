// The xtensor bridge: read an Array as an xtensor expression, and turn an xtensor expression
// into an Array. Kept out of every other header because xtensor is slow to compile.
//
//   #include "core/xtensor.hpp"
//   Array x = Array::matrix({{1, 2}, {3, 4}});
//   auto v = view<float>(x);                     // no copy, read-only, shape {2, 2}
//   float s = xt::sum(v)();                      // 10
//   Array y = from_xtensor(xt::transpose(v) * 2.f);   // evaluates and copies: [[2, 6], [4, 8]]
//
// view<T> needs T to match the dtype (float, int32_t, uint32_t; uint8_t or bool for bool
// arrays) and throws std::invalid_argument otherwise. The view borrows the array's buffer:
// keep the Array (or a copy of it) alive while the view is used. from_xtensor takes float,
// int32_t, uint32_t or bool expressions of rank <= 8 and never records a gradient.
#pragma once

#include <cstddef>
#include <type_traits>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xeval.hpp>

#include "core/array.hpp"

namespace flaxpp {

template <class T>
auto view(const Array& a) {
  std::vector<std::size_t> shape(a.shape().begin(), a.shape().end());
  return xt::adapt(a.data<T>(), static_cast<std::size_t>(a.size()), xt::no_ownership(), shape);
}

template <class E>
Array from_xtensor(const xt::xexpression<E>& expr) {
  using V = std::remove_cv_t<typename E::value_type>;
  static_assert(std::is_same_v<V, float> || std::is_same_v<V, int32_t> ||
                    std::is_same_v<V, uint32_t> || std::is_same_v<V, bool>,
                "from_xtensor: the expression must hold float, int32_t, uint32_t or bool");
  xt::xarray<V, xt::layout_type::row_major> value = expr.derived_cast();
  Shape shape;
  for (std::size_t d : value.shape()) shape.push_back(static_cast<int64_t>(d));
  Array out = Array::empty(shape, dtype_of<V>::value);
  if constexpr (std::is_same_v<V, bool>) {
    auto* o = out.mutable_data<uint8_t>();
    for (std::size_t i = 0; i < value.size(); ++i) o[i] = value.data()[i] ? 1 : 0;
  } else {
    std::copy(value.data(), value.data() + value.size(), out.mutable_data<V>());
  }
  return out;
}

}  // namespace flaxpp
