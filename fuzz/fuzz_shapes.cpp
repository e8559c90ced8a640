// libFuzzer target: shapes from the input through jnp::reshape and jnp::broadcast_to, the size
// arithmetic (core/shape: numel, checked_nbytes, broadcast_shapes, strides_of) and Array::empty.
// Input: a rank byte and up to 8 dimensions for the array (small: 0..3 each, at most 6561
// elements), then the same for the target shape (anything: negative, huge, overflowing).
// Contract: a bad target is std::invalid_argument, before anything is allocated; a good one
// gives an array of that shape sharing (reshape) or holding (broadcast_to) the right data.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "core/ops.hpp"

using namespace flaxpp;

namespace {

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "fuzz check failed: %s\n", why.c_str());
  std::abort();
}

// A rank byte (mod 9), then that many dimensions: one byte each when `small` (0..3), else eight
// bytes each, little-endian (so -1, 0, 2^32 and INT64_MIN are all reachable).
bool read_shape(const uint8_t*& p, const uint8_t* end, bool small, Shape& s) {
  if (p == end) return false;
  size_t rank = *p++ % 9;
  for (size_t i = 0; i < rank; ++i) {
    if (small) {
      if (p == end) return false;
      s.push_back(*p++ % 4);
    } else {
      if (end - p < 8) return false;
      int64_t d;
      std::memcpy(&d, p, 8);
      p += 8;
      s.push_back(d);
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const uint8_t *p = data, *end = data + size;
  Shape a_shape, target;
  if (!read_shape(p, end, true, a_shape) || !read_shape(p, end, false, target)) return 0;
  Array a = Array::empty(a_shape, DType::int32);
  int32_t* v = a.mutable_data<int32_t>();
  for (int64_t i = 0; i < a.size(); ++i) v[i] = static_cast<int32_t>(i);

  try {
    Array r = jnp::reshape(a, target);
    if (r.size() != a.size()) die("reshape changed the element count");
    for (int64_t d : r.shape())
      if (d < 0) die("reshape kept a negative dimension of " + to_string(target));
    if (numel(r.shape()) != a.size()) die("reshape's shape does not count its elements");
    if (a.size() && std::memcmp(r.raw(), a.raw(), a.nbytes()) != 0) die("reshape moved data");
  } catch (const std::invalid_argument&) {
  }

  // broadcast_to allocates the target: only targets whose size is known to be small are run
  // through to the allocation; the others must be refused by the checks first.
  int64_t count = -1;
  try {
    count = checked_numel(target, "fuzz");
  } catch (const std::invalid_argument&) {
  }
  if (count > (int64_t{1} << 16)) return 0;
  try {
    Array b = jnp::broadcast_to(a, target);
    if (b.shape() != target) die("broadcast_to gave another shape");
    if (count < 0) die("broadcast_to accepted a shape numel refuses: " + to_string(target));
    Shape st = strides_of(target);
    (void)st;
  } catch (const std::invalid_argument&) {
  } catch (const std::bad_alloc&) {
    die("broadcast_to tried to allocate " + to_string(target));
  }
  return 0;
}
