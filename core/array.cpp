#include "core/array.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace flaxpp {

Array::Array(Shape shape, DType dtype, std::shared_ptr<Buffer> buffer)
    : shape_(shape), size_(numel(shape)), dtype_(dtype), buffer_(std::move(buffer)) {}

namespace {
// The storage of every default-constructed Array (a float32 scalar 0): placeholders such as
// Node::saved_output or unneeded cotangents are made per op, so they must not allocate.
const std::shared_ptr<Buffer>& zero_scalar() {
  static const std::shared_ptr<Buffer> zero = [] {
    auto b = std::make_shared<Buffer>(sizeof(float));
    *static_cast<float*>(b->data()) = 0.f;
    return b;
  }();
  return zero;
}
}  // namespace

Array::Array() : shape_(), dtype_(DType::float32), buffer_(zero_scalar()) {}

Array::Array(float v) : Array(empty({}, DType::float32)) { mutable_data<float>()[0] = v; }

Array::Array(int32_t v) : Array(empty({}, DType::int32)) { mutable_data<int32_t>()[0] = v; }

Array::Array(bool v) : Array(empty({}, DType::bool_)) { mutable_data<uint8_t>()[0] = v; }

namespace {
std::string gib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1 << 30));
  return buf;
}
}  // namespace

Array Array::empty(const Shape& shape, DType dtype, const char* op) {
  size_t bytes = checked_nbytes(shape, dtype, op);
  auto needs = [&] {
    return std::string(op) + ": shape " + to_string(shape) + " of " + dtype_name(dtype) +
           " needs " + std::to_string(bytes) + " bytes (" + gib(bytes) + ")";
  };
  if (bytes > memory_limit_bytes())
    throw AllocationError(needs() + ", more than this machine's memory and swap (" +
                          gib(memory_limit_bytes()) + ")");
  try {
    return Array(shape, dtype, std::make_shared<Buffer>(bytes));
  } catch (const std::bad_alloc&) {
    throw AllocationError(needs() + ": out of memory");
  }
}

namespace {
template <class T>
Array from_values(const Shape& shape, const std::vector<T>& values) {
  if (static_cast<int64_t>(values.size()) != checked_numel(shape, "Array::from"))
    throw std::invalid_argument("Array::from: " + std::to_string(values.size()) +
                                " values do not fill shape " + to_string(shape));
  Array a = Array::empty(shape, dtype_of<T>::value);
  std::copy(values.begin(), values.end(), a.mutable_data<T>());
  return a;
}
}  // namespace

Array Array::from(const Shape& shape, const std::vector<float>& v) { return from_values(shape, v); }
Array Array::from(const Shape& shape, const std::vector<int32_t>& v) {
  return from_values(shape, v);
}
Array Array::from(const Shape& shape, const std::vector<uint32_t>& v) {
  return from_values(shape, v);
}

Array Array::from_bool(const Shape& shape, const std::vector<bool>& values) {
  std::vector<uint8_t> bytes(values.begin(), values.end());
  return from_values(shape, bytes);
}

Array Array::from_bytes(const Shape& shape, DType dtype, const void* bytes) {
  Array a = empty(shape, dtype, "Array::from_bytes");
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
  if (what[0] == 'm' && buffer_ == zero_scalar())  // "mutable_data"
    throw std::logic_error(
        "Array::mutable_data: a default-constructed Array is shared and read-only");
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
    throw std::invalid_argument("Array::item: array of shape " + to_string(shape_) + " has " +
                                std::to_string(size()) + " elements, not 1");
  return static_cast<T>(to_double()[0]);
}
template float Array::item<float>() const;
template double Array::item<double>() const;
template int32_t Array::item<int32_t>() const;
template int64_t Array::item<int64_t>() const;
template uint32_t Array::item<uint32_t>() const;
template bool Array::item<bool>() const;

Array Array::reshaped(const Shape& shape) const {
  if (checked_numel(shape, "reshape") != size())
    throw std::invalid_argument("reshape: cannot reshape array of shape " + to_string(shape_) +
                                " (size " + std::to_string(size()) + ") into shape " +
                                to_string(shape));
  return Array(shape, dtype_, buffer_);
}

Array Array::detached() const { return Array(shape_, dtype_, buffer_); }

Array Array::copy() const { return from_bytes(shape_, dtype_, raw()); }

}  // namespace flaxpp
