#include "core/array.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <ostream>
#include <sstream>

namespace flaxpp {

Buffer::Buffer(size_t bytes) : bytes_(bytes) {
  // aligned_alloc needs a size that is a multiple of the alignment; never allocate 0 bytes.
  size_t rounded = std::max<size_t>(64, (bytes + 63) / 64 * 64);
  data_ = std::aligned_alloc(64, rounded);
  if (!data_) throw std::bad_alloc();
}

Buffer::~Buffer() { std::free(data_); }

Array::Array(Shape shape, DType dtype, std::shared_ptr<Buffer> buffer)
    : shape_(shape), dtype_(dtype), buffer_(std::move(buffer)) {}

Array::Array() : Array(0.f) {}

Array::Array(float v) : Array(empty({}, DType::float32)) { mutable_data<float>()[0] = v; }

Array::Array(int32_t v) : Array(empty({}, DType::int32)) { mutable_data<int32_t>()[0] = v; }

Array::Array(bool v) : Array(empty({}, DType::bool_)) { mutable_data<uint8_t>()[0] = v; }

Array Array::empty(const Shape& shape, DType dtype) {
  for (int64_t d : shape)
    if (d < 0) throw std::invalid_argument("Array: negative dimension in shape " + to_string(shape));
  return Array(shape, dtype, std::make_shared<Buffer>(numel(shape) * itemsize(dtype)));
}

namespace {
template <class T>
Array from_values(const Shape& shape, const std::vector<T>& values) {
  if (static_cast<int64_t>(values.size()) != numel(shape))
    throw std::invalid_argument("Array::from: " + std::to_string(values.size()) +
                                " values do not fill shape " + to_string(shape));
  Array a = Array::empty(shape, dtype_of<T>::value);
  std::copy(values.begin(), values.end(), a.mutable_data<T>());
  return a;
}
}  // namespace

Array Array::from(const Shape& shape, const std::vector<float>& v) { return from_values(shape, v); }
Array Array::from(const Shape& shape, const std::vector<int32_t>& v) { return from_values(shape, v); }
Array Array::from(const Shape& shape, const std::vector<uint32_t>& v) { return from_values(shape, v); }

Array Array::from_bool(const Shape& shape, const std::vector<bool>& values) {
  std::vector<uint8_t> bytes(values.begin(), values.end());
  return from_values(shape, bytes);
}

Array Array::from_bytes(const Shape& shape, DType dtype, const void* bytes) {
  Array a = empty(shape, dtype);
  if (a.nbytes()) std::memcpy(a.mutable_raw(), bytes, a.nbytes());
  return a;
}

Array Array::vector(std::initializer_list<float> v) {
  return from({static_cast<int64_t>(v.size())}, std::vector<float>(v));
}

Array Array::matrix(std::initializer_list<std::initializer_list<float>> rows) {
  std::vector<float> flat;
  int64_t cols = rows.size() ? static_cast<int64_t>(rows.begin()->size()) : 0;
  for (const auto& r : rows) {
    if (static_cast<int64_t>(r.size()) != cols)
      throw std::invalid_argument("Array::matrix: ragged rows");
    flat.insert(flat.end(), r.begin(), r.end());
  }
  return from({static_cast<int64_t>(rows.size()), cols}, flat);
}

void Array::check_dtype(DType want, const char* what) const {
  if (want != dtype_)
    throw std::invalid_argument(std::string("Array::") + what + ": array has dtype " +
                                dtype_name(dtype_) + ", not " + dtype_name(want));
}

std::vector<double> Array::to_double() const {
  std::vector<double> out(static_cast<size_t>(size()));
  switch (dtype_) {
    case DType::float32: std::copy(data<float>(), data<float>() + size(), out.begin()); break;
    case DType::int32: std::copy(data<int32_t>(), data<int32_t>() + size(), out.begin()); break;
    case DType::uint32: std::copy(data<uint32_t>(), data<uint32_t>() + size(), out.begin()); break;
    case DType::bool_: std::copy(data<uint8_t>(), data<uint8_t>() + size(), out.begin()); break;
  }
  return out;
}

std::vector<float> Array::to_float() const {
  if (dtype_ == DType::float32) return {data<float>(), data<float>() + size()};
  auto d = to_double();
  return {d.begin(), d.end()};
}

template <class T>
T Array::item() const {
  if (size() != 1)
    throw std::invalid_argument("Array::item: array of shape " + to_string(shape_) +
                                " has " + std::to_string(size()) + " elements, not 1");
  return static_cast<T>(to_double()[0]);
}
template float Array::item<float>() const;
template double Array::item<double>() const;
template int32_t Array::item<int32_t>() const;
template int64_t Array::item<int64_t>() const;
template uint32_t Array::item<uint32_t>() const;
template bool Array::item<bool>() const;

Array Array::reshaped(const Shape& shape) const {
  if (numel(shape) != size())
    throw std::invalid_argument("reshape: cannot reshape array of shape " + to_string(shape_) +
                                " (size " + std::to_string(size()) + ") into shape " +
                                to_string(shape));
  return Array(shape, dtype_, buffer_);
}

Array Array::detached() const { return Array(shape_, dtype_, buffer_); }

Array Array::copy() const { return from_bytes(shape_, dtype_, raw()); }

// ---- printing, after NumPy's default (floatmode 'maxprec', precision 8) ----------------------

namespace {

std::string trim_fixed(double v, int prec) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
  }
  return s;
}

// Fewest fractional digits (<= 8) that print v, as float32, uniquely.
int digits_needed(float v) {
  for (int p = 0; p < 8; ++p) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", p, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) return p;
  }
  return 8;
}

struct Formatter {
  DType dtype;
  bool sci = false;
  int prec = 0;
  size_t int_width = 0, frac_width = 0;

  explicit Formatter(const Array& a) : dtype(a.dtype()) {
    if (dtype != DType::float32) return;
    const float* p = a.data<float>();
    double maxabs = 0, minabs = INFINITY;
    for (int64_t i = 0; i < a.size(); ++i) {
      if (!std::isfinite(p[i])) continue;
      double v = std::fabs(p[i]);
      maxabs = std::max(maxabs, v);
      if (v != 0) minabs = std::min(minabs, v);
    }
    sci = maxabs >= 1e8 || (minabs < 1e-4 && minabs != INFINITY) ||
          (minabs != INFINITY && maxabs / minabs > 1e3);
    for (int64_t i = 0; i < a.size(); ++i)
      if (std::isfinite(p[i])) prec = std::max(prec, sci ? 8 : digits_needed(p[i]));
    for (int64_t i = 0; i < a.size(); ++i) {
      std::string s = raw(p[i]);
      size_t dot = s.find('.');
      if (dot == std::string::npos) dot = s.size();
      int_width = std::max(int_width, dot);
      frac_width = std::max(frac_width, s.size() - dot);
    }
  }
  std::string raw(float v) const {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    if (sci) {
      char buf[64];
      // Shortest mantissa that round-trips, like NumPy's unique scientific mode.
      for (int p = 0; p <= 8; ++p) {
        std::snprintf(buf, sizeof buf, "%.*e", p, static_cast<double>(v));
        if (std::strtof(buf, nullptr) == v) break;
      }
      std::string s = buf;
      size_t e = s.find('e');
      std::string mant = s.substr(0, e), ex = s.substr(e + 1);
      if (mant.find('.') == std::string::npos) mant += ".";
      int exv = std::stoi(ex);
      char eb[16];
      std::snprintf(eb, sizeof eb, "e%c%02d", exv < 0 ? '-' : '+', std::abs(exv));
      return mant + eb;
    }
    return trim_fixed(v, prec);
  }
  std::string operator()(const Array& a, int64_t i) const {
    switch (dtype) {
      case DType::int32: return std::to_string(a.data<int32_t>()[i]);
      case DType::uint32: return std::to_string(a.data<uint32_t>()[i]);
      case DType::bool_: return a.data<uint8_t>()[i] ? "True" : "False";
      case DType::float32: break;
    }
    std::string s = raw(a.data<float>()[i]);
    size_t dot = s.find('.');
    if (dot == std::string::npos) dot = s.size();
    std::string out(int_width - std::min(int_width, dot), ' ');
    out += s;
    out.append(frac_width - std::min(frac_width, s.size() - dot), ' ');
    return out;
  }
};

void print_rec(std::ostream& os, const Array& a, const Formatter& f, size_t dim, int64_t offset,
               const Shape& strides, size_t indent, const char* sep) {
  if (a.ndim() == 0) {
    os << f(a, 0);
    return;
  }
  os << '[';
  int64_t n = a.shape()[dim];
  for (int64_t i = 0; i < n; ++i) {
    if (i) {
      os << sep;
      if (dim + 1 < a.ndim()) {
        for (size_t k = dim + 1; k < a.ndim(); ++k) os << '\n';
        os << std::string(indent + dim + 1, ' ');
      } else if (sep[0] == ',') {
        os << ' ';
      }
    }
    if (dim + 1 == a.ndim())
      os << f(a, offset + i * strides[dim]);
    else
      print_rec(os, a, f, dim + 1, offset + i * strides[dim], strides, indent, sep);
  }
  os << ']';
}

}  // namespace

std::string Array::repr() const {
  std::ostringstream os;
  os << "Array(";
  Formatter f(*this);
  print_rec(os, *this, f, 0, 0, strides_of(shape_), 6, ",");
  os << ", dtype=" << dtype_name(dtype_) << ")";
  return os.str();
}

std::string Array::str() const {
  std::ostringstream os;
  Formatter f(*this);
  print_rec(os, *this, f, 0, 0, strides_of(shape_), 0, " ");
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Array& a) { return os << a.repr(); }

}  // namespace flaxpp
