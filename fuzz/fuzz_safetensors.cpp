// libFuzzer target: the safetensors loader, from_safetensors(bytes) with both separators and
// from_safetensors(target, bytes). A file that decodes must survive to_safetensors ->
// from_safetensors bit for bit, metadata included.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_common.hpp"

using namespace flaxpp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Tree target = fuzz::params_target();
  std::span<const uint8_t> bytes(data, size);

  for (char sep : {'.', '/'}) {
    try {
      Safetensors st = read_safetensors(bytes, sep);
      Safetensors again = read_safetensors(
          to_safetensors(st.tree, {.separator = sep, .metadata = st.metadata}), sep);
      if (!tree_equal(st.tree, again.tree)) fuzz::die("safetensors round trip changed the tree");
      if (st.metadata != again.metadata) fuzz::die("safetensors round trip changed the metadata");
    } catch (const SerializationError&) {
    }
  }
  for (bool allow_extra : {false, true}) {
    try {
      fuzz::check_like(target, from_safetensors(target, bytes, {.allow_extra = allow_extra}));
    } catch (const SerializationError&) {
    }
  }
  return 0;
}
