// Benchmark inputs: deterministic float32 values, the same on every run and machine.
#pragma once

#include <cstdint>
#include <vector>

#include "core/array.hpp"

namespace bench {

// Values in [-1, 1) from a xorshift sequence seeded by `seed` (no global RNG).
inline flaxpp::Array filled(const flaxpp::Shape& s, uint32_t seed) {
  std::vector<float> v(static_cast<size_t>(flaxpp::numel(s)));
  uint32_t x = seed * 2654435761u + 1;
  for (auto& e : v) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    e = static_cast<float>(x >> 8) / static_cast<float>(1 << 23) - 1.f;
  }
  return flaxpp::Array::from(s, v);
}

}  // namespace bench
