// The storage under every Array: 64-byte aligned blocks, large ones cached for reuse.
#include "core/allocator.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <tuple>
#include <vector>

#include <sys/mman.h>
#include <sys/sysinfo.h>

// AddressSanitizer: GCC defines __SANITIZE_ADDRESS__, clang only answers __has_feature.
#if defined(__SANITIZE_ADDRESS__)
#define FLAXPP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FLAXPP_ASAN 1
#endif
#endif
#ifndef FLAXPP_ASAN
#define FLAXPP_ASAN 0
#endif

namespace flaxpp {

namespace {

// Freed large blocks are kept for reuse. A training step frees and reallocates the same
// activations every step; glibc serves the large ones from a fresh mmap, and trims the heap top
// under the small ones, so their pages fault in (and are zeroed by the kernel) again: a quarter
// of a small model's step, and a page fault costs about 2 us here. Blocks of at least kCacheMin
// bytes go back to a per-size free list, up to FLAXPP_BUFFER_CACHE_MB in total (default 1024; 0
// turns the cache off); beyond that they are freed. A request may take a cached block up to a
// quarter larger (see take). Off under AddressSanitizer, so it still sees every use after free.
constexpr size_t kCacheMin = size_t{8} << 10, kLooseFit = size_t{16} << 20, kPage = 4096;

constexpr size_t kSlack = 64 + sizeof(void*);
constexpr size_t kMapMin = size_t{64} << 10;

// Blocks from 64 KiB up are mapped and unmapped directly: glibc would raise its mmap threshold
// after the first large free and serve later large blocks from a heap it never shrinks, so the
// footprint would drift above what is live (measured: 475 vs 392 MiB for the README model).
void* system_alloc(size_t capacity) {
  if (capacity < kMapMin) return std::malloc(capacity);
  void* p = mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}
void system_free(void* raw, size_t capacity) {
  if (capacity < kMapMin)
    std::free(raw);
  else
    munmap(raw, capacity);
}
size_t page_up(size_t bytes) { return (bytes + kPage - 1) / kPage * kPage; }
// Gives the pages of bytes [from, to) of a mapped block back to the system. The range stays
// mapped and reads as zeros; touching it faults fresh pages in.
void drop_pages(void* raw, size_t from, size_t to) {
  if (to > from) madvise(static_cast<char*>(raw) + from, to - from, MADV_DONTNEED);
}

class BlockCache {
 public:
  static BlockCache& get() {
    static BlockCache* cache = new BlockCache;  // never destroyed: buffers may outlive statics
    return *cache;
  }
  // Size classes: whole pages from 64 KiB up, cache lines below (little waste on small blocks).
  static size_t rounded(size_t bytes) {
    size_t unit = bytes >= kMapMin ? kPage : 64;
    return (bytes + unit - 1) / unit * unit;
  }

  // What the caller brings into memory (a miss's `size`, or the part of a hit block past its
  // resident bytes) the cache partly gives back first, so that it does not make the process
  // much larger:
  //  - on a miss, cached blocks smaller than `size` (which cannot serve it) are unmapped, largest
  //    first, up to `size` bytes;
  //  - then, while the cache still holds more than kResidentSlack (16 MiB) in memory, the pages
  //    at the end of cached blocks from kReclaimMin (4 MiB) up to kLooseFit (16 MiB) are given
  //    back (madvise), largest first; those blocks stay cached and mapped, and their pages fault
  //    in again when they are reused.
  // Why these bounds: blocks of 16 MiB and more are reused whole every step (trimming them
  // would fault the logits back in on every forward pass), and blocks under 4 MiB are cheap to
  // keep but costly to fault in page by page; the 2x fit is only for blocks of 16 MiB and more,
  // where it saves mapping a second large block, because below that it would let half-size
  // arrays hold whole blocks.
  void* take(size_t size, size_t* capacity, size_t* resident) {
    std::vector<std::pair<void*, size_t>> evicted;           // unmap (raw, capacity)
    std::vector<std::tuple<void*, size_t, size_t>> dropped;  // drop_pages(raw, from, to)
    void* hit = nullptr;
    {
      std::lock_guard<std::mutex> lock(m_);
      auto it = free_.lower_bound(size);
      size_t shortfall = size;  // bytes the caller will bring into memory
      if (it != free_.end() && it->first <= (size >= kLooseFit ? 2 * size : size + size / 4)) {
        Block b = it->second.back();
        *capacity = it->first;
        *resident = b.resident;
        hit = b.raw;
        shortfall = size - std::min(size, b.resident);
        it->second.pop_back();
        cached_ -= it->first;
        resident_ -= b.resident;
        if (it->second.empty()) free_.erase(it);
      } else {
        while (shortfall > 0 && it != free_.begin()) {  // smaller blocks, largest first
          auto at = std::prev(it);
          const Block& b = at->second.back();
          evicted.emplace_back(b.raw, at->first);
          shortfall -= std::min(shortfall, b.resident);
          resident_ -= b.resident;
          cached_ -= at->first;
          at->second.pop_back();
          if (at->second.empty()) free_.erase(at);
        }
      }
      size_t reclaim =
          std::min(shortfall, resident_ > kResidentSlack ? resident_ - kResidentSlack : 0);
      auto below = std::make_reverse_iterator(free_.lower_bound(kLooseFit));
      for (auto at = below; reclaim > 0 && at != free_.rend() && at->first >= kReclaimMin; ++at)
        for (Block& b : at->second) {
          if (reclaim == 0) break;
          size_t keep = b.resident - std::min(b.resident, page_up(reclaim));
          if (keep == b.resident) continue;
          dropped.emplace_back(b.raw, keep, b.resident);
          reclaim -= std::min(reclaim, b.resident - keep);
          resident_ -= b.resident - keep;
          b.resident = keep;
        }
    }
    for (auto [raw, cap] : evicted) system_free(raw, cap);
    for (auto [raw, from, to] : dropped) drop_pages(raw, from, to);
    return hit;
  }
  bool give(void* raw, size_t size, size_t resident) {
    std::lock_guard<std::mutex> lock(m_);
    if (cached_ + size > cap_) return false;
    free_[size].push_back({raw, resident});
    cached_ += size;
    resident_ += resident;
    return true;
  }
  bool enabled() const { return cap_ > 0; }
  size_t release() {
    std::lock_guard<std::mutex> lock(m_);
    size_t freed = cached_;
    for (auto& [size, blocks] : free_)
      for (const Block& b : blocks) system_free(b.raw, size);
    free_.clear();
    cached_ = resident_ = 0;
    return freed;
  }

 private:
  static constexpr size_t kResidentSlack = size_t{16} << 20, kReclaimMin = size_t{4} << 20;
  struct Block {
    void* raw;
    size_t resident;  // leading bytes that may have pages in memory (the rest was given back)
  };
  BlockCache() {
#if FLAXPP_ASAN
    cap_ = 0;
#else
    if (const char* env = std::getenv("FLAXPP_BUFFER_CACHE_MB"))
      cap_ = size_t(std::max(0, std::atoi(env))) << 20;
#endif
  }
  std::mutex m_;
  std::map<size_t, std::vector<Block>> free_;  // by size
  size_t cached_ = 0, resident_ = 0, cap_ = size_t{1024} << 20;
};

}  // namespace

size_t release_buffer_cache() { return BlockCache::get().release(); }

size_t memory_limit_bytes() {
  static const size_t limit = [] {
    struct sysinfo si {};
    if (sysinfo(&si) != 0) return SIZE_MAX;
    unsigned __int128 total = (static_cast<unsigned __int128>(si.totalram) + si.totalswap) *
                              (si.mem_unit ? si.mem_unit : 1);
    return total > SIZE_MAX ? SIZE_MAX : static_cast<size_t>(total);
  }();
  return limit;
}
bool buffer_cache_enabled() { return BlockCache::get().enabled(); }

// 64-byte alignment by hand over plain malloc: glibc's aligned_alloc (memalign) splits a larger
// chunk and frees the rest, which cost about a quarter of a tiny op (and fragments the heap
// into malloc_consolidate calls). The malloc'ed pointer is kept just below the aligned data.
Buffer::Buffer(size_t bytes) : bytes_(bytes) {
  if (bytes > memory_limit_bytes() || bytes > SIZE_MAX / 2)
    throw AllocationError("cannot allocate " + std::to_string(bytes) +
                          " bytes: more than this machine's memory and swap (" +
                          std::to_string(memory_limit_bytes()) + " bytes)");
  void* raw = nullptr;
  if (bytes >= kCacheMin) {
    size_t need = BlockCache::rounded(bytes + kSlack);
    raw = BlockCache::get().take(need, &capacity_, &resident_);
    if (!raw) {
      capacity_ = need;
      raw = system_alloc(capacity_);
    }
    resident_ = std::max(resident_, need);  // what this array may touch
  } else {
    raw = std::malloc(std::max<size_t>(bytes, 1) + kSlack);
  }
  if (!raw)
    throw AllocationError("cannot allocate " + std::to_string(bytes) + " bytes: out of memory");
  auto at = (reinterpret_cast<uintptr_t>(raw) + sizeof(void*) + 63) & ~uintptr_t{63};
  data_ = reinterpret_cast<void*>(at);
  static_cast<void**>(data_)[-1] = raw;
}

Buffer::~Buffer() {
  void* raw = static_cast<void**>(data_)[-1];
  if (capacity_ == 0)
    std::free(raw);
  else if (!BlockCache::get().give(raw, capacity_, resident_))
    system_free(raw, capacity_);
}

}  // namespace flaxpp
