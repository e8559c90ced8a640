// How Flax derives each parameter's PRNG key, under three compatibility profiles.
//
//   nn::Compat::current  Flax >= 0.4.1 key derivation (one fold_in of SHA-1 over the module path
//                        and the counter) with JAX >= 0.5 partitionable bits. The default.
//   nn::Compat::v2024    the same key derivation with JAX <= 0.4.38 legacy bits.
//   nn::Compat::v2021    Flax <= 0.4.0 (the 0.3.4 that gmlp_flax ran on): one fold_in per path
//                        element, then one for the counter; legacy bits; LayerNorm variance
//                        E[x^2] - E[x]^2 without clipping at 0.
//
// For the parameter at path p1/.../pk with per-scope counter c (1 for the first make_rng of a
// stream in a scope, 2 for the second, ...) and stream root key K:
//   current, v2024: fold_in(K, be32(sha1(p1 || ... || pk || minimal_be_bytes(c))[0:4]))
//   v2021:          fold_in(fold_in(...fold_in(K, be32(sha1(p1)[0:4]))..., be32(sha1(pk)[0:4])), c)
// (Flax's rng_guide and scope_test known answers check both: tests/nn/module_test.cpp.)
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../core/random.hpp"

namespace flaxpp::nn {

enum class Compat { current, v2024, v2021 };

const char* compat_name(Compat c);                 // "current", "2024", "2021"
Compat compat_from_name(const std::string& name);  // throws std::invalid_argument
// The JAX bit-generation mode a profile implies.
random::BitsMode bits_mode_of(Compat c);
// Process-wide default used by init/apply when no Compat is passed.
Compat default_compat();
void set_default_compat(Compat c);

// SHA-1 digest (FIPS 180-4) of `data`.
std::array<uint8_t, 20> sha1(std::string_view data);
// First 4 digest bytes as a big-endian uint32 (Flax's string hash).
uint32_t sha1_prefix32(std::string_view data);

// The key of the c-th make_rng (c >= 1) of a stream in the scope at `path`.
random::Key derive_key(Compat compat, random::Key stream_root, const std::vector<std::string>& path,
                       uint32_t counter);

}  // namespace flaxpp::nn
