// The storage under every flaxpp::Array (core/array.hpp): one immutable block per array.
//
//   auto b = std::make_shared<Buffer>(bytes);   // 64-byte aligned, uninitialised
//   release_buffer_cache();                     // give cached blocks back to the system
//
// Errors: std::bad_alloc when the system refuses the block.
#pragma once

#include <cstddef>

namespace flaxpp {

// Storage shared by arrays: 64-byte aligned, immutable once the producing op returns. Freed
// blocks of 8 KiB and more are cached for reuse (FLAXPP_BUFFER_CACHE_MB, default 1024);
// release_buffer_cache() returns them to the system and says how many bytes that was.
size_t release_buffer_cache();
bool buffer_cache_enabled();  // false under AddressSanitizer or FLAXPP_BUFFER_CACHE_MB=0

class Buffer {
 public:
  explicit Buffer(size_t bytes);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_;
  size_t bytes_;
  // The underlying block's bytes when it comes from (and returns to) the cache, and how many of
  // its leading bytes may have pages in memory.
  size_t capacity_ = 0, resident_ = 0;
};

}  // namespace flaxpp
