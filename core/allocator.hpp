// The storage under every flaxpp::Array (core/array.hpp): one immutable block per array.
//
//   auto b = std::make_shared<Buffer>(bytes);   // 64-byte aligned, uninitialised
//   release_buffer_cache();                     // give cached blocks back to the system
//
// Errors: AllocationError (a std::bad_alloc) when the block cannot be had; Array::empty
// (core/array.hpp) adds the op, the shape and the dtype to its message.
#pragma once

#include <cstddef>
#include <new>
#include <string>

namespace flaxpp {

// Storage shared by arrays: 64-byte aligned, immutable once the producing op returns. Freed
// blocks of 8 KiB and more are cached for reuse (FLAXPP_BUFFER_CACHE_MB, default 1024);
// release_buffer_cache() returns them to the system and says how many bytes that was.
size_t release_buffer_cache();
bool buffer_cache_enabled();  // false under AddressSanitizer or FLAXPP_BUFFER_CACHE_MB=0

// An allocation that cannot succeed, with a message saying what was asked for. It is a
// std::bad_alloc so that code handling memory exhaustion still catches it.
class AllocationError : public std::bad_alloc {
 public:
  explicit AllocationError(std::string msg) : msg_(std::move(msg)) {}
  const char* what() const noexcept override { return msg_.c_str(); }

 private:
  std::string msg_;
};

// Bytes no allocation can exceed here: physical memory plus swap (sysinfo), read once.
size_t memory_limit_bytes();

class Buffer {
 public:
  explicit Buffer(size_t bytes);  // throws AllocationError (size beyond memory_limit_bytes())
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
