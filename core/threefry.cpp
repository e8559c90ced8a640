#include "core/threefry.hpp"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "core/parallel.hpp"

namespace flaxpp::random {

namespace {

using U32 = xsimd::batch<uint32_t>;
constexpr int64_t kLanes = static_cast<int64_t>(U32::size);
static_assert(kWordPad % kLanes == 0, "kWordPad must cover whole batches");
constexpr int64_t kPiece = kWordPiece;  // words per sink call: stays in L1 with its outputs
constexpr int64_t kParallelMin = int64_t{1} << 16;  // draws above this many words use threads
constexpr int64_t kBlock = 64 * kPiece;  // items a thread takes at a time (128K: 512 KB out)

alignas(64) constexpr uint32_t kIota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static_assert(kLanes <= 16);

template <int R, class T>
inline T rotl(const T& x) {
#if XSIMD_WITH_AVX2 && !XSIMD_WITH_AVX512F
  // Whole-byte rotations as one byte shuffle instead of two shifts and an or: AVX2 has one
  // shift port, and the shifts are what bounds this loop.
  if constexpr (std::is_same_v<T, U32> && (R == 16 || R == 24)) {
    const __m256i bytes =
        R == 16 ? _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0, 1,
                                   6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13)
                : _mm256_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12, 1, 2, 3, 0,
                                   5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12);
    return U32(_mm256_shuffle_epi8(x, bytes));
  }
#endif
  return (x << R) | (x >> (32 - R));
}

// One Threefry round: T is uint32_t or a batch of them (same arithmetic, lane by lane).
template <int R, class T>
inline void mix(T& x0, T& x1) {
  x0 += x1;
  x1 = rotl<R>(x1);
  x1 ^= x0;
}

template <class T>
inline void mix4a(T& x0, T& x1) {  // rotation group A
  mix<13>(x0, x1), mix<15>(x0, x1), mix<26>(x0, x1), mix<6>(x0, x1);
}
template <class T>
inline void mix4b(T& x0, T& x1) {  // rotation group B
  mix<17>(x0, x1), mix<29>(x0, x1), mix<16>(x0, x1), mix<24>(x0, x1);
}

// 20 rounds in groups A B A B A, with key injection s = 1..5 after each group (spec §1).
template <class T>
inline void block(uint32_t k0, uint32_t k1, T& x0, T& x1) {
  const uint32_t k2 = k0 ^ k1 ^ 0x1BD11BDAu;
  x0 += T(k0), x1 += T(k1);
  mix4a(x0, x1), x0 += T(k1), x1 += T(k2 + 1u);
  mix4b(x0, x1), x0 += T(k2), x1 += T(k0 + 2u);
  mix4a(x0, x1), x0 += T(k0), x1 += T(k1 + 3u);
  mix4b(x0, x1), x0 += T(k1), x1 += T(k2 + 4u);
  mix4a(x0, x1), x0 += T(k2), x1 += T(k0 + 5u);
}

std::atomic<int> g_mode{static_cast<int>(BitsMode::partitionable)};
thread_local int t_mode_override = -1;
std::atomic<int> g_threads{0};

// Runs fn(begin, end) over [0, items) on up to `threads` threads of the kernel pool (this one
// included). Threads take contiguous blocks of kBlock items from a shared counter, so a thread
// slowed down by other load does not hold up the rest; which thread hashes a block never changes
// its values.
void run_chunked(int64_t items, int threads, const std::function<void(int64_t, int64_t)>& fn) {
  if (threads <= 1) return fn(0, items);
  std::atomic<int64_t> next{0};
  flaxpp::parallel_for(threads, 1, [&](int64_t, int64_t) {
    for (int64_t b; (b = next.fetch_add(kBlock)) < items;) fn(b, std::min(items, b + kBlock));
  });
}

// Threads for a draw of `words` words made of `items` work items (words or legacy pairs).
int threads_for(int64_t words, int64_t items) {
  if (words <= kParallelMin) return 1;
  return static_cast<int>(std::clamp<int64_t>((items + kBlock - 1) / kBlock, 1, num_threads()));
}

void zero_pad(uint32_t* buf, int64_t count) {
  int64_t padded = (count + kWordPad - 1) / kWordPad * kWordPad;
  std::fill(buf + count, buf + padded, 0u);
}

// Partitionable: word i = y0 ^ y1 of block(key, (hi32(i), lo32(i))).
void partitionable_piece(Key key, int64_t begin, int64_t count, uint32_t* out) {
  const uint32_t hi = static_cast<uint32_t>(static_cast<uint64_t>(begin) >> 32);
  const uint32_t lo = static_cast<uint32_t>(begin);
  const bool crosses = uint64_t{lo} + static_cast<uint64_t>(count) > (uint64_t{1} << 32);
  int64_t i = 0;
  if (!crosses) {
    const U32 iota = U32::load_aligned(kIota);
    for (; i + kLanes <= count; i += kLanes) {
      U32 x0(hi), x1 = U32(lo + static_cast<uint32_t>(i)) + iota;
      block(key.k0, key.k1, x0, x1);
      (x0 ^ x1).store_unaligned(out + i);
    }
  }
  for (; i < count; ++i) {
    uint64_t idx = static_cast<uint64_t>(begin + i);
    uint32_t x0 = static_cast<uint32_t>(idx >> 32), x1 = static_cast<uint32_t>(idx);
    block(key.k0, key.k1, x0, x1);
    out[i] = x0 ^ x1;
  }
}

// Legacy: pair p hashes counts (p, h+p) (the padding 0 instead of n when n is odd and p = h-1);
// y0 is word p and y1 is word h+p.
void legacy_piece(Key key, int64_t n, int64_t h, int64_t p0, int64_t count, uint32_t* y0s,
                  uint32_t* y1s) {
  const U32 iota = U32::load_aligned(kIota);
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes) {
    U32 x0 = U32(static_cast<uint32_t>(p0 + i)) + iota;
    U32 x1 = U32(static_cast<uint32_t>(h + p0 + i)) + iota;
    block(key.k0, key.k1, x0, x1);
    x0.store_unaligned(y0s + i);
    x1.store_unaligned(y1s + i);
  }
  for (; i < count; ++i) {
    uint32_t x0 = static_cast<uint32_t>(p0 + i), x1 = static_cast<uint32_t>(h + p0 + i);
    block(key.k0, key.k1, x0, x1);
    y0s[i] = x0, y1s[i] = x1;
  }
  if (n % 2 == 1 && p0 + count == h) {  // the pair holding the padding: redo it with x1 = 0
    uint32_t x0 = static_cast<uint32_t>(h - 1), x1 = 0;
    block(key.k0, key.k1, x0, x1);
    y0s[count - 1] = x0;
  }
}

}  // namespace

std::array<uint32_t, 2> threefry2x32_block(Key key, std::array<uint32_t, 2> count) {
  uint32_t x0 = count[0], x1 = count[1];
  block(key.k0, key.k1, x0, x1);
  return {x0, x1};
}

std::vector<uint32_t> threefry_2x32(Key key, std::span<const uint32_t> counts) {
  const int64_t n = static_cast<int64_t>(counts.size()), h = (n + 1) / 2;
  std::vector<uint32_t> out(2 * h);
  auto second = [&](int64_t i) { return h + i < n ? counts[h + i] : 0u; };  // padded half
  int64_t i = 0;
  for (; i + kLanes <= n / 2; i += kLanes) {  // pairs whose second count is real
    U32 x0 = U32::load_unaligned(counts.data() + i),
        x1 = U32::load_unaligned(counts.data() + h + i);
    block(key.k0, key.k1, x0, x1);
    x0.store_unaligned(out.data() + i);
    x1.store_unaligned(out.data() + h + i);
  }
  for (; i < h; ++i) {
    uint32_t x0 = counts[i], x1 = second(i);
    block(key.k0, key.k1, x0, x1);
    out[i] = x0, out[h + i] = x1;
  }
  out.resize(n);
  return out;
}

Array threefry_2x32(Key key, const Array& counts) {
  const uint32_t* c = counts.data<uint32_t>();
  std::vector<uint32_t> out = threefry_2x32(key, std::span<const uint32_t>(c, counts.size()));
  return Array::from_bytes(counts.shape(), DType::uint32, out.data());
}

BitsMode bits_mode() {
  int m = t_mode_override >= 0 ? t_mode_override : g_mode.load(std::memory_order_relaxed);
  return static_cast<BitsMode>(m);
}

void set_bits_mode(BitsMode mode) { g_mode.store(static_cast<int>(mode)); }

ScopedBitsMode::ScopedBitsMode(BitsMode mode) : previous_(t_mode_override) {
  t_mode_override = static_cast<int>(mode);
}

ScopedBitsMode::~ScopedBitsMode() { t_mode_override = previous_; }

int num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : flaxpp::num_threads();
}

void set_num_threads(int n) {
  if (n < 0) throw std::invalid_argument("set_num_threads: negative count " + std::to_string(n));
  g_threads.store(n);
}

void random_words(Key key, int64_t n, BitsMode mode, const WordSink& sink) {
  if (n < 0) throw std::invalid_argument("random_words: negative size " + std::to_string(n));
  if (n == 0) return;
  if (mode == BitsMode::partitionable) {
    run_chunked(n, threads_for(n, n), [&](int64_t begin, int64_t end) {
      alignas(64) uint32_t buf[kPiece + kWordPad];
      for (int64_t o = begin; o < end; o += kPiece) {
        int64_t c = std::min(kPiece, end - o);
        partitionable_piece(key, o, c, buf);
        zero_pad(buf, c);
        sink(buf, c, o);
      }
    });
    return;
  }
  if (n >= (int64_t{1} << 32) - 1)
    throw std::invalid_argument(
        "random bits: legacy threefry mode supports fewer than 2^32-1 "
        "words per draw, got " +
        std::to_string(n));
  const int64_t h = (n + 1) / 2;
  run_chunked(h, threads_for(n, h), [&](int64_t begin, int64_t end) {
    alignas(64) uint32_t y0s[kPiece + kWordPad], y1s[kPiece + kWordPad];
    for (int64_t p = begin; p < end; p += kPiece) {
      int64_t c = std::min(kPiece, end - p);
      legacy_piece(key, n, h, p, c, y0s, y1s);
      int64_t c1 = std::min(p + c, n - h) - p;  // the last y1 is padding when n is odd
      zero_pad(y0s, c);
      sink(y0s, c, p);
      if (c1 > 0) {
        zero_pad(y1s, c1);
        sink(y1s, c1, h + p);
      }
    }
  });
}

}  // namespace flaxpp::random
