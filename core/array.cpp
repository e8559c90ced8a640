#include "core/array.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <ostream>
#include <sstream>
#include <tuple>
#include <vector>

#include <sys/mman.h>

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

  // The smallest cached block of `size` to 1.25 * `size` bytes, or null; from 16 MiB up, a block
  // up to twice the size (the README model's 40 MB embedding gradient takes the 80 MB logits'
  // block instead of mapping 40 MB more). The block's capacity goes to *capacity and how many of
  // its leading bytes may be in memory to *resident; it returns to its own size class when freed.
  //
  // What the caller brings into memory (a miss's `size`, or the part of a hit block past its
  // resident bytes) the cache partly gives back first, so that it does not make the process
  // much larger:
  //  - on a miss, cached blocks smaller than `size` (which cannot serve it) are unmapped, largest
  //    first, up to `size` bytes;
  //  - then, while the cache still holds more than kResidentSlack (16 MiB) in memory, the pages
  //    at the end of cached blocks from kReclaimMin (4 MiB) up to kLooseFit (16 MiB) are given
  //    back (madvise), largest first; those blocks stay cached and mapped, and their pages fault
  //    in again when they are reused.
  // Measured with gmlp_bench's config i sequence (init, forward, then forward+backward), peak
  // RSS of init + forward + backward: 400.6 MiB without the second step (4-8 MB activation and
  // gradient blocks stayed in memory through the backward pass), 375 without a cache, 398.3 now.
  // Each trimmed page that is reused costs a fault, about 2 us here, and trims that the next
  // step undoes repeat every step. Per call, measured: trimming blocks of 16 MiB and more too
  // (peak 392.8) made every forward pass fault the 80 MB logits block back in, 1.2k -> 8.5k
  // faults; trimming down to 0 bytes instead of 16 MiB took 1.7x the faults of a
  // forward+backward pass; trimming from 1 MiB up, 20x those of a config ii train step (from 4
  // MiB: 496 instead of 219, ~1 ms of 100). (Also measured and rejected: a 2x fit for every size
  // let half-size activations take whole blocks, +33 MB for the README model; unmapping larger
  // blocks made steps evict each other's blocks and fault them in again, 2-3x slower.)
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
bool buffer_cache_enabled() { return BlockCache::get().enabled(); }

// 64-byte alignment by hand over plain malloc: glibc's aligned_alloc (memalign) splits a larger
// chunk and frees the rest, which cost about a quarter of a tiny op (and fragments the heap
// into malloc_consolidate calls). The malloc'ed pointer is kept just below the aligned data.
Buffer::Buffer(size_t bytes) : bytes_(bytes) {
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
  if (!raw) throw std::bad_alloc();
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

Array Array::empty(const Shape& shape, DType dtype) {
  for (int64_t d : shape)
    if (d < 0)
      throw std::invalid_argument("Array: negative dimension in shape " + to_string(shape));
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
  if (numel(shape) != size())
    throw std::invalid_argument("reshape: cannot reshape array of shape " + to_string(shape_) +
                                " (size " + std::to_string(size()) + ") into shape " +
                                to_string(shape));
  return Array(shape, dtype_, buffer_);
}

Array Array::detached() const { return Array(shape_, dtype_, buffer_); }

Array Array::copy() const { return from_bytes(shape_, dtype_, raw()); }

// ---- printing, after NumPy's array2string (floatmode 'maxprec', precision 8, linewidth 75,
// threshold 1000, edgeitems 3) and JAX's Array.__repr__ ---------------------------------------

namespace {

constexpr int kPrecision = 8;
constexpr int64_t kThreshold = 1000, kEdgeItems = 3;
constexpr size_t kLineWidth = 75;

// Shortest digits after the point (<= 8) that read back as v: Dragon4's unique mode with
// NumPy's precision cap.
int fixed_digits(float v) {
  char buf[64];
  for (int p = 0; p < kPrecision; ++p) {
    std::snprintf(buf, sizeof buf, "%.*f", p, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) return p;
  }
  return kPrecision;
}

// "1.", "0.25", "-3.5": positional, trailing zeros trimmed, the point kept.
std::string fixed_unique(float v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", fixed_digits(v), static_cast<double>(v));
  std::string s = buf;
  if (s.find('.') == std::string::npos) return s + ".";
  while (s.back() == '0') s.pop_back();
  return s;
}

// Scientific, shortest unique mantissa: {"1.5", "-05"} for 1.5e-05 ("1." when no digits).
std::pair<std::string, std::string> sci_unique(float v) {
  char buf[64];
  for (int p = 0; p <= kPrecision; ++p) {
    std::snprintf(buf, sizeof buf, "%.*e", p, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  std::string s = buf;
  size_t e = s.find('e');
  std::string mant = s.substr(0, e);
  if (mant.find('.') == std::string::npos) mant += ".";
  int ex = std::stoi(s.substr(e + 1));
  char eb[16];
  std::snprintf(eb, sizeof eb, "%c%02d", ex < 0 ? '-' : '+', std::abs(ex));
  return {mant, eb};
}

// Flat offsets of the elements that are shown (all, or the edges of each axis when summarising).
std::vector<int64_t> shown_offsets(const Shape& shape, bool summarise) {
  std::vector<int64_t> offs{0};
  Shape st = strides_of(shape);
  for (size_t d = 0; d < shape.size(); ++d) {
    std::vector<int64_t> idx;
    int64_t n = shape[d];
    for (int64_t i = 0; i < n; ++i)
      if (!summarise || n <= 2 * kEdgeItems || i < kEdgeItems || i >= n - kEdgeItems)
        idx.push_back(i);
    std::vector<int64_t> next;
    for (int64_t o : offs)
      for (int64_t i : idx) next.push_back(o + i * st[d]);
    offs.swap(next);
  }
  return offs;
}

// NumPy's FloatingFormat / IntegerFormat / BoolFormat, fitted to the shown elements.
struct Formatter {
  DType dtype;
  bool exp_format = false;
  size_t pad_left = 0, pad_right = 0;
  size_t exp_precision = 0;  // digits after the point in scientific mode
  size_t int_width = 0;
  bool scalar_bool = false;

  Formatter(const Array& a, const std::vector<int64_t>& shown) : dtype(a.dtype()) {
    if (dtype == DType::bool_) {
      scalar_bool = a.ndim() == 0;
    } else if (dtype == DType::int32 || dtype == DType::uint32) {
      for (int64_t o : shown) int_width = std::max(int_width, integer(a, o).size());
    } else {
      fit_floats(a.data<float>(), shown);
    }
  }

  void fit_floats(const float* p, const std::vector<int64_t>& shown) {
    float maxv = 0, minv = INFINITY;
    bool any_finite = false, any_nonfinite = false, neg_inf = false;
    for (int64_t o : shown) {
      float v = p[o];
      if (!std::isfinite(v)) {
        any_nonfinite = true;
        neg_inf = neg_inf || v == -INFINITY;
        continue;
      }
      any_finite = true;
      if (v != 0) maxv = std::max(maxv, std::fabs(v)), minv = std::min(minv, std::fabs(v));
    }
    if (minv != INFINITY)
      exp_format = maxv >= 1e8f || static_cast<double>(minv) < 1e-4 || maxv / minv > 1000.f;
    if (any_finite && exp_format) {
      size_t exp_size = 0;
      for (int64_t o : shown) {
        if (!std::isfinite(p[o])) continue;
        auto [mant, ex] = sci_unique(p[o]);
        size_t dot = mant.find('.');
        pad_left = std::max(pad_left, dot);
        exp_precision = std::max(exp_precision, mant.size() - dot - 1);
        exp_size = std::max(exp_size, ex.size() - 1);
      }
      pad_right = exp_size + 2 + exp_precision;
    } else if (any_finite) {
      for (int64_t o : shown) {
        if (!std::isfinite(p[o])) continue;
        std::string s = fixed_unique(p[o]);
        size_t dot = s.find('.');
        pad_left = std::max(pad_left, dot);
        pad_right = std::max(pad_right, s.size() - dot - 1);
      }
    }
    if (any_nonfinite) {
      size_t offset = pad_right + 1;
      size_t need = std::max<size_t>(3, 3 + (neg_inf ? 1 : 0));
      if (need > offset) pad_left = std::max(pad_left, need - offset);
    }
  }

  static std::string integer(const Array& a, int64_t o) {
    return a.dtype() == DType::int32 ? std::to_string(a.data<int32_t>()[o])
                                     : std::to_string(a.data<uint32_t>()[o]);
  }

  std::string operator()(const Array& a, int64_t o) const {
    switch (dtype) {
      case DType::bool_: return a.data<uint8_t>()[o] ? (scalar_bool ? "True" : " True") : "False";
      case DType::int32:
      case DType::uint32: {
        std::string s = integer(a, o);
        return std::string(int_width - std::min(int_width, s.size()), ' ') + s;
      }
      case DType::float32: break;
    }
    float v = a.data<float>()[o];
    if (!std::isfinite(v)) {
      std::string s = std::isnan(v) ? "nan" : v < 0 ? "-inf" : "inf";
      return std::string(pad_left + pad_right + 1 - std::min(pad_left + pad_right + 1, s.size()),
                         ' ') +
             s;
    }
    std::string s;
    size_t dot;
    if (exp_format) {
      auto [mant, ex] = sci_unique(v);
      dot = mant.find('.');
      mant.append(exp_precision - (mant.size() - dot - 1), '0');  // min_digits: pad with zeros
      s = mant + "e" + ex;
    } else {
      s = fixed_unique(v);
      dot = s.find('.');
      s.append(pad_right - (s.size() - dot - 1), ' ');
    }
    return std::string(pad_left - std::min(pad_left, dot), ' ') + s;
  }
};

std::string rstrip(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
  return s;
}

// NumPy's _formatArray: rows wrap at the line width, axes are separated by blank lines.
struct Printer {
  const Array& a;
  const Formatter& fmt;
  Shape strides;
  std::string separator;
  bool summarise;

  std::string rec(size_t axis, int64_t offset, const std::string& hanging, size_t width) const {
    size_t axes_left = a.ndim() - axis;
    if (axes_left == 0) return fmt(a, offset);
    std::string next_hanging = hanging + ' ';
    size_t next_width = width - 1;
    int64_t n = a.shape()[axis];
    bool show_summary = summarise && 2 * kEdgeItems < n;
    int64_t leading = show_summary ? kEdgeItems : 0, trailing = show_summary ? kEdgeItems : n;
    auto item = [&](int64_t i) {
      return rec(axis + 1, offset + i * strides[axis], next_hanging, next_width);
    };
    std::string s;
    if (axes_left == 1) {
      size_t elem_width = width - std::max<size_t>(rstrip(separator).size(), 1);
      std::string line = hanging;
      auto extend = [&](const std::string& word) {
        bool wrap = line.size() + word.size() > elem_width && line.size() > hanging.size();
        if (wrap) {
          s += rstrip(line) + "\n";
          line = hanging;
        }
        line += word;
      };
      for (int64_t i = 0; i < leading; ++i) extend(item(i)), line += separator;
      if (show_summary) extend("..."), line += separator;
      for (int64_t i = trailing; i > 1; --i) extend(item(n - i)), line += separator;
      extend(item(n - 1));
      s += line;
    } else {
      std::string line_sep = rstrip(separator) + std::string(axes_left - 1, '\n');
      for (int64_t i = 0; i < leading; ++i) s += hanging + item(i) + line_sep;
      if (show_summary) s += hanging + "..." + line_sep;
      for (int64_t i = trailing; i > 1; --i) s += hanging + item(n - i) + line_sep;
      s += hanging + item(n - 1);
    }
    return "[" + s.substr(hanging.size()) + "]";
  }
};

// np.array2string(a, separator=sep, prefix=prefix, suffix=suffix) for a non-empty array.
std::string array2string(const Array& a, const std::string& sep, size_t prefix_len,
                         size_t suffix_len) {
  bool summarise = a.size() > kThreshold;
  Formatter fmt(a, shown_offsets(a.shape(), summarise));
  Printer p{a, fmt, strides_of(a.shape()), sep, summarise};
  return p.rec(0, 0, std::string(prefix_len + 1, ' '), kLineWidth - suffix_len);
}

std::string python_tuple(const Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

}  // namespace

// JAX's Array.__repr__, including its spacing rule for a dtype that does not fit the last line.
std::string Array::repr() const {
  const std::string prefix = "Array(";
  std::string dtype_str = std::string("dtype=") + dtype_name(dtype_) + ")";
  std::string s = size() == 0 ? "[], shape=" + python_tuple(shape_)
                              : array2string(*this, ", ", prefix.size(), 1);
  size_t nl = s.rfind('\n');
  size_t last_line_len = nl == std::string::npos ? s.size() + 2 : s.size() - nl + 1;  // sic, as JAX
  std::string sep =
      last_line_len + dtype_str.size() + 1 > kLineWidth ? std::string(prefix.size(), ' ') : " ";
  return prefix + s + "," + sep + dtype_str;
}

// np.array_str: the body alone, elements separated by spaces ("[1. 2.]"); 0-d arrays print
// like the NumPy scalar ("1.0", "3", "True").
std::string Array::str() const {
  if (size() == 0) return "[]";
  if (ndim() == 0) {
    switch (dtype_) {
      case DType::bool_: return data<uint8_t>()[0] ? "True" : "False";
      case DType::int32: return std::to_string(data<int32_t>()[0]);
      case DType::uint32: return std::to_string(data<uint32_t>()[0]);
      case DType::float32: break;
    }
    float v = data<float>()[0];
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
    float m = std::fabs(v);
    if (m == 0 || (m >= 1e-4f && m < 1e16f)) {
      std::string s = fixed_unique(v);
      return s.back() == '.' ? s + "0" : s;
    }
    auto [mant, ex] = sci_unique(v);
    if (mant.back() == '.') mant.pop_back();
    return mant + "e" + ex;
  }
  return array2string(*this, " ", 0, 0);
}

std::ostream& operator<<(std::ostream& os, const Array& a) { return os << a.repr(); }

}  // namespace flaxpp
