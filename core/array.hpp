// flaxpp::Array: an immutable n-d array (JAX's jax.Array), float32 / int32 / uint32 / bool.
//
//   Array x = Array::from({2, 3}, {1.f, 2.f, 3.f, 4.f, 5.f, 6.f});   // float32 (2,3)
//   Array i = Array::from({3}, std::vector<int32_t>{0, 1, 2});        // int32 (3,)
//   Array s = 2.5f;                                                   // float32 scalar
//   Array y = x;                      // O(1): shares the (immutable) buffer
//   std::cout << x;                   // Array([[1., 2., 3.],\n       [4., 5., 6.]], dtype=float32)
//   x.data<float>()[4] == 5.f;  x.shape() == Shape{2, 3};  x.item<float>() (size-1 arrays)
//
// Storage is row-major and contiguous; an Array never changes after construction, so copies
// share it. Operations (core/ops.hpp) return new arrays. Kernels build results with
// Array::empty(shape, dtype) + mutable_data<T>() before anyone else sees them.
// The xtensor view of the data is in core/xtensor.hpp (kept apart: xtensor is heavy to compile).
//
// Autodiff: inside grad/vjp (core/autodiff.hpp) an Array also carries the graph node that
// produced it; outside any transformation `node()` is null and nothing is recorded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "allocator.hpp"
#include "shape.hpp"

namespace flaxpp {

namespace autodiff {
struct Node;
}

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::float32;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::int32;
};
template <>
struct dtype_of<uint32_t> {
  static constexpr DType value = DType::uint32;
};
template <>
struct dtype_of<bool> {  // stored as one byte per element (uint8_t), 0 or 1
  static constexpr DType value = DType::bool_;
};
template <>
struct dtype_of<uint8_t> {
  static constexpr DType value = DType::bool_;
};

class Array {
 public:
  // A float32 scalar 0. (Default-constructed arrays are valid values, like jnp.float32(0).)
  Array();
  Array(float v);    // NOLINT: float32 scalar, so `x * 2.f` reads like JAX
  Array(int32_t v);  // NOLINT: int32 scalar
  explicit Array(bool v);

  // Uninitialised, for kernels. A negative dimension or an overflowing size throws
  // std::invalid_argument; memory that cannot be had throws AllocationError; both messages name
  // `op`, the shape, the dtype and the bytes, and nothing is allocated first.
  static Array empty(const Shape& shape, DType dtype, const char* op = "Array::empty");
  static Array from(const Shape& shape, const std::vector<float>& values);
  static Array from(const Shape& shape, const std::vector<int32_t>& values);
  static Array from(const Shape& shape, const std::vector<uint32_t>& values);
  static Array from_bool(const Shape& shape, const std::vector<bool>& values);
  static Array from_bytes(const Shape& shape, DType dtype, const void* bytes);  // copies
  // Nested literal helpers: Array::vector({1,2,3}) (float32, rank 1), Array::matrix({{1,2},{3,4}}).
  static Array vector(std::initializer_list<float> v);
  static Array matrix(std::initializer_list<std::initializer_list<float>> rows);

  const Shape& shape() const { return shape_; }
  size_t ndim() const { return shape_.size(); }
  int64_t size() const { return size_; }
  DType dtype() const { return dtype_; }
  size_t nbytes() const { return static_cast<size_t>(size()) * itemsize(dtype_); }
  bool is_float() const { return dtype_ == DType::float32; }

  // Typed read access; throws if T does not match the dtype (bool arrays: T = uint8_t or bool).
  template <class T>
  const T* data() const {
    check_dtype(dtype_of<T>::value, "data");
    return static_cast<const T*>(raw());
  }
  const void* raw() const { return buffer_->data(); }
  // Write access, only for kernels filling a freshly created array.
  template <class T>
  T* mutable_data() {
    check_dtype(dtype_of<T>::value, "mutable_data");
    return static_cast<T*>(buffer_->data());
  }
  void* mutable_raw() { return buffer_->data(); }

  // The single element of a size-1 array, converted to T.
  template <class T>
  T item() const;
  // Values converted to double / int64, row-major (for tests and printing).
  std::vector<double> to_double() const;
  std::vector<float> to_float() const;

  // Same data, new shape (O(1), shares the buffer); element counts must agree.
  Array reshaped(const Shape& shape) const;
  // Same data and shape, no autodiff node (jax.lax.stop_gradient's storage part).
  Array detached() const;
  // A deep copy with its own buffer.
  Array copy() const;
  bool shares_buffer_with(const Array& o) const { return buffer_ == o.buffer_; }
  // How many arrays share this storage (autodiff::reusable asks whether it is the only one).
  long use_count() const { return buffer_.use_count(); }

  const std::shared_ptr<autodiff::Node>& node() const { return node_; }
  void set_node(std::shared_ptr<autodiff::Node> n) { node_ = std::move(n); }

  std::string repr() const;  // JAX style: Array([1., 2.], dtype=float32)
  std::string str() const;   // NumPy style body only: [1. 2.]

 private:
  Array(Shape shape, DType dtype, std::shared_ptr<Buffer> buffer);
  void check_dtype(DType want, const char* what) const;

  Shape shape_;
  int64_t size_ = 1;  // numel(shape_), cached: kernels ask for it in hot loops
  DType dtype_ = DType::float32;
  std::shared_ptr<Buffer> buffer_;
  std::shared_ptr<autodiff::Node> node_;
};

std::ostream& operator<<(std::ostream& os, const Array& a);

}  // namespace flaxpp
