#include "core/threefry.hpp"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>

#include "core/parallel.hpp"
#include "core/simd/kernels.hpp"
#include "core/simd/threefry_block.hpp"

namespace flaxpp::random {

namespace {

constexpr int64_t kPiece = kWordPiece;  // words per sink call: stays in L1 with its outputs
constexpr int64_t kParallelMin = int64_t{1} << 16;  // draws above this many words use threads
constexpr int64_t kBlock = 64 * kPiece;  // items a thread takes at a time (128K: 512 KB out)

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
  const uint64_t first = static_cast<uint64_t>(begin);
  if ((first & 0xFFFFFFFFu) + static_cast<uint64_t>(count) <= (uint64_t{1} << 32))
    return simd::kernels().threefry_counter(key.k0, key.k1, first, count, out);
  for (int64_t i = 0; i < count; ++i) {  // the piece crosses a multiple of 2^32: word by word
    uint64_t idx = first + static_cast<uint64_t>(i);
    uint32_t x0 = static_cast<uint32_t>(idx >> 32), x1 = static_cast<uint32_t>(idx);
    simd::block(key.k0, key.k1, x0, x1);
    out[i] = x0 ^ x1;
  }
}

// Legacy: pair p hashes counts (p, h+p) (the padding 0 instead of n when n is odd and p = h-1);
// y0 is word p and y1 is word h+p.
void legacy_piece(Key key, int64_t n, int64_t h, int64_t p0, int64_t count, uint32_t* y0s,
                  uint32_t* y1s) {
  simd::kernels().threefry_iota(key.k0, key.k1, static_cast<uint32_t>(p0),
                                static_cast<uint32_t>(h + p0), y0s, y1s, count);
  if (n % 2 == 1 && p0 + count == h) {  // the pair holding the padding: redo it with x1 = 0
    uint32_t x0 = static_cast<uint32_t>(h - 1), x1 = 0;
    simd::block(key.k0, key.k1, x0, x1);
    y0s[count - 1] = x0;
  }
}

}  // namespace

std::array<uint32_t, 2> threefry2x32_block(Key key, std::array<uint32_t, 2> count) {
  uint32_t x0 = count[0], x1 = count[1];
  simd::block(key.k0, key.k1, x0, x1);
  return {x0, x1};
}

std::vector<uint32_t> threefry_2x32(Key key, std::span<const uint32_t> counts) {
  const int64_t n = static_cast<int64_t>(counts.size()), h = (n + 1) / 2;
  std::vector<uint32_t> out(2 * h);
  auto second = [&](int64_t i) { return h + i < n ? counts[h + i] : 0u; };  // padded half
  simd::kernels().threefry_pairs(key.k0, key.k1, counts.data(), counts.data() + h, out.data(),
                                 out.data() + h, n / 2);  // pairs whose second count is real
  for (int64_t i = n / 2; i < h; ++i) {
    uint32_t x0 = counts[i], x1 = second(i);
    simd::block(key.k0, key.k1, x0, x1);
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
