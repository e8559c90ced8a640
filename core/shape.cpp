#include "core/shape.hpp"

#include <algorithm>

namespace flaxpp {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::float32: return "float32";
    case DType::int32: return "int32";
    case DType::uint32: return "uint32";
    case DType::bool_: return "bool";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  if (name == "float32") return DType::float32;
  if (name == "int32") return DType::int32;
  if (name == "uint32") return DType::uint32;
  if (name == "bool") return DType::bool_;
  throw std::invalid_argument("unsupported dtype '" + name +
                              "' (flaxpp has float32, int32, uint32 and bool)");
}

void Shape::push_back(int64_t d) {
  if (rank_ == kMaxRank) throw std::invalid_argument("Shape: more than 8 dimensions");
  dims_[rank_++] = d;
}

void Shape::insert(size_t pos, int64_t d) {
  if (rank_ == kMaxRank) throw std::invalid_argument("Shape: more than 8 dimensions");
  for (size_t i = rank_; i > pos; --i) dims_[i] = dims_[i - 1];
  dims_[pos] = d;
  ++rank_;
}

void Shape::erase(size_t pos) {
  for (size_t i = pos; i + 1 < rank_; ++i) dims_[i] = dims_[i + 1];
  --rank_;
}

bool Shape::operator==(const Shape& o) const {
  return rank_ == o.rank_ && std::equal(begin(), end(), o.begin());
}

int64_t checked_numel(const Shape& s, const char* op) {
  int64_t n = 1;
  bool overflow = false;
  for (int64_t d : s) {
    if (d < 0)
      throw std::invalid_argument(std::string(op) + ": negative dimension " + std::to_string(d) +
                                  " in shape " + to_string(s));
    overflow = overflow || __builtin_mul_overflow(n, d, &n);
  }
  // A zero dimension makes the array empty whatever the others are.
  if (overflow && std::find(s.begin(), s.end(), 0) == s.end())
    throw std::invalid_argument(std::string(op) + ": shape " + to_string(s) +
                                " has more elements than int64 can count (the product of its "
                                "dimensions overflows 2^63 - 1)");
  return overflow ? 0 : n;
}

int64_t numel(const Shape& s) { return checked_numel(s, "numel"); }

size_t checked_nbytes(const Shape& s, DType d, const char* op) {
  int64_t n = checked_numel(s, op), bytes = 0;
  if (__builtin_mul_overflow(n, static_cast<int64_t>(itemsize(d)), &bytes))
    throw std::invalid_argument(std::string(op) + ": shape " + to_string(s) + " of " +
                                dtype_name(d) + " needs " + std::to_string(n) + " x " +
                                std::to_string(itemsize(d)) +
                                " bytes, more than a process can address (2^63 - 1)");
  return static_cast<size_t>(bytes);
}

int64_t checked_mul(int64_t a, int64_t b, const char* op, const char* what) {
  int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    throw std::invalid_argument(std::string(op) + ": " + what + " " + std::to_string(a) + " x " +
                                std::to_string(b) + " is negative or overflows int64");
  return r;
}

std::string to_string(const Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ",";
    r += std::to_string(s[i]);
  }
  return r + (s.size() == 1 ? ",)" : ")");
}

Shape strides_of(const Shape& s) {
  Shape st = s;
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    if (i > 0) acc = checked_mul(acc, s[i], "strides_of", "stride");
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out;
  for (size_t i = 0; i < n; ++i) out.push_back(1);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      throw std::invalid_argument(std::string(op) + ": shapes " + to_string(a) + " and " +
                                  to_string(b) + " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

size_t normalize_axis(int64_t axis, size_t ndim, const char* op) {
  int64_t n = static_cast<int64_t>(ndim);
  if (axis < -n || axis >= n)
    throw std::invalid_argument(std::string(op) + ": axis " + std::to_string(axis) +
                                " is out of bounds for an array of rank " + std::to_string(n));
  return static_cast<size_t>(axis < 0 ? axis + n : axis);
}

}  // namespace flaxpp
