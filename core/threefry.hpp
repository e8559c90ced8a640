// JAX's threefry2x32 PRNG core: keys, the 20-round block function, the array-level hash and the
// stream of random 32-bit words behind jax.random.bits, in both bit modes.
//
//   using namespace flaxpp::random;
//   Key k{0, 42};                                         // key_data == [0, 42]
//   threefry2x32_block(k, {0, 7});                       // == fold_in(k, 7) as two words
//   Array h = threefry_2x32(k, counts);                   // uint32, counts.shape
//   { ScopedBitsMode legacy(BitsMode::legacy); ... }      // like jax_threefry_partitionable=False
//
// JAX's threefry2x32 PRNG (jax._src.prng). Everything here is integer arithmetic
// modulo 2^32 and therefore bit-exact with JAX on every backend.
//
// Bit modes. BitsMode::partitionable (the JAX >= 0.5.0 default) derives element i of a draw from
// block(key, (hi32(i), lo32(i))); BitsMode::legacy (JAX <= 0.4.38) hashes iota(n) with
// threefry_2x32, pairing element i with element ceil(n/2)+i. split() and bits() follow the mode;
// fold_in, seeds and the block function do not. The mode is process-wide (set_bits_mode), with a
// per-thread override (ScopedBitsMode), like JAX's config flag and its context manager.
//
// Threads. Draws of more than 2^16 words are cut into contiguous blocks of 128K words that up to
// num_threads() threads take in turn. Every word is a pure function of (key, index, n), so the
// result never depends on the thread count or the schedule.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "array.hpp"

namespace flaxpp::random {

// A raw threefry2x32 key: k0, k1 are JAX's key_data(key)[0], [1].
struct Key {
  uint32_t k0 = 0, k1 = 0;
  friend bool operator==(const Key&, const Key&) = default;
};

// The Threefry-2x32-20 block function (Random123): counter (x0, x1) -> (y0, y1) under `key`.
std::array<uint32_t, 2> threefry2x32_block(Key key, std::array<uint32_t, 2> count);

// jax.prng.threefry_2x32: flattens `counts` (row-major), pads to even length m with one 0,
// hashes element i of the first half with element i of the second half, drops the padding.
std::vector<uint32_t> threefry_2x32(Key key, std::span<const uint32_t> counts);
Array threefry_2x32(Key key, const Array& counts);  // counts: uint32, any shape; same shape out

// ---- the jax_threefry_partitionable flag ----
enum class BitsMode { partitionable, legacy };
BitsMode bits_mode();               // this thread's override if any, else the process setting
void set_bits_mode(BitsMode mode);  // process-wide (default: partitionable)

// Overrides the mode for the current thread while in scope (JAX's `with jax.threefry_partitionable(..)`).
class ScopedBitsMode {
 public:
  explicit ScopedBitsMode(BitsMode mode);
  ~ScopedBitsMode();
  ScopedBitsMode(const ScopedBitsMode&) = delete;
  ScopedBitsMode& operator=(const ScopedBitsMode&) = delete;

 private:
  int previous_;
};

// ---- threads used for large draws ----
// Draws run on the kernel pool (core/parallel.hpp). This caps how many of its threads a draw
// uses: 0 (the default) = all of them, flaxpp::num_threads(); 1 = single-threaded.
int num_threads();
void set_num_threads(int n);

// ---- the word stream ----
// The n 32-bit words of jax.random.bits(key, (n,), uint32) in `mode`, handed out in pieces:
// sink(words, count, offset) receives words[0..count) == bits[offset .. offset+count), with
// count <= kWordPiece. The buffer is zero-padded up to a multiple of kWordPad words, so vector
// kernels may process whole batches, and the sink may overwrite it in place. For large n the
// pieces arrive concurrently from several threads (each index exactly once, in no set order).
// Legacy mode rejects n >= 2^32 - 1 (JAX would chain split keys there): std::invalid_argument.
inline constexpr int64_t kWordPad = 16;
inline constexpr int64_t kWordPiece = 2048;
using WordSink = std::function<void(uint32_t* words, int64_t count, int64_t offset)>;
void random_words(Key key, int64_t n, BitsMode mode, const WordSink& sink);

}  // namespace flaxpp::random
