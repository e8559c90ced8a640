// libFuzzer target: the Flax msgpack loader, from_bytes(bytes) and from_bytes(target, bytes).
// A tree that decodes must survive to_bytes -> from_bytes bit for bit, with and without chunking.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_common.hpp"

using namespace flaxpp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Tree target = fuzz::params_target();
  std::span<const uint8_t> bytes(data, size);

  try {
    Tree t = from_bytes(bytes);
    if (!tree_equal(t, from_bytes(to_bytes(t)))) fuzz::die("msgpack round trip changed the tree");
    if (!tree_equal(t, from_bytes(to_bytes(t, /*max_chunk_size=*/8))))
      fuzz::die("chunked msgpack round trip changed the tree");
  } catch (const SerializationError&) {
  }
  for (bool allow_extra : {false, true}) {
    try {
      fuzz::check_like(target, from_bytes(target, bytes, {.allow_extra = allow_extra}));
    } catch (const SerializationError&) {
    }
  }
  return 0;
}
