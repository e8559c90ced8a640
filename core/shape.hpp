// Shapes and dtypes of flaxpp arrays.
//
//   Shape s{2, 3};            // (2,3)
//   s.size() == 2; numel(s) == 6; to_string(s) == "(2,3)"
//   checked_nbytes(s, DType::float32, "zeros") == 24   // every byte count goes through this
//   broadcast_shapes({2,1}, {3}) == Shape{2,3}   // NumPy rules; throws on mismatch
//
// A Shape keeps up to 8 dimensions inline (no heap allocation), which keeps tiny-array ops
// cheap. Dimensions are int64. Axes may be negative (counted from the end), as in NumPy.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace flaxpp {

enum class DType : uint8_t { float32, int32, uint32, bool_ };

// NumPy's names: "float32", "int32", "uint32", "bool".
const char* dtype_name(DType d);
DType dtype_from_name(const std::string& name);  // throws std::invalid_argument
inline size_t itemsize(DType d) { return d == DType::bool_ ? 1 : 4; }

class Shape {
 public:
  static constexpr size_t kMaxRank = 8;
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
  explicit Shape(std::span<const int64_t> dims) { assign(dims.begin(), dims.end()); }
  Shape(const std::vector<int64_t>& dims) { assign(dims.begin(), dims.end()); }  // NOLINT

  size_t size() const { return rank_; }
  bool empty() const { return rank_ == 0; }
  int64_t operator[](size_t i) const { return dims_[i]; }
  int64_t& operator[](size_t i) { return dims_[i]; }
  const int64_t* begin() const { return dims_.data(); }
  const int64_t* end() const { return dims_.data() + rank_; }
  int64_t* begin() { return dims_.data(); }
  int64_t* end() { return dims_.data() + rank_; }
  int64_t back() const { return dims_[rank_ - 1]; }
  void push_back(int64_t d);
  void insert(size_t pos, int64_t d);
  void erase(size_t pos);
  std::vector<int64_t> vec() const { return {begin(), end()}; }
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  template <class It>
  void assign(It b, It e) {
    rank_ = 0;
    for (; b != e; ++b) push_back(*b);
  }
  std::array<int64_t, kMaxRank> dims_{};
  size_t rank_ = 0;
};

// Element and byte counts, overflow-checked: every size in the library is computed by these.
// A negative dimension, or a product beyond int64 (elements) or PTRDIFF_MAX (bytes), throws
// std::invalid_argument naming `op` and the shape, as NumPy refuses "array is too big".
int64_t numel(const Shape& s);  // names "numel" as the op
int64_t checked_numel(const Shape& s, const char* op);
size_t checked_nbytes(const Shape& s, DType d, const char* op);
// a * b for sizes (both >= 0); throws naming `op` and `what` on overflow.
int64_t checked_mul(int64_t a, int64_t b, const char* op, const char* what);
std::string to_string(const Shape& s);  // "(2,3)", "(5,)", "()" for scalars (Python tuples)
// Row-major strides in elements.
Shape strides_of(const Shape& s);
// NumPy broadcasting; `op` names the operation in the error message.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op = "broadcast");
// Normalises a possibly negative axis for an array of rank `ndim`; throws naming `op`.
size_t normalize_axis(int64_t axis, size_t ndim, const char* op);

}  // namespace flaxpp
