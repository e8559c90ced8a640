// libFuzzer target: the JSON parameter loader, from_json(text) and from_json(target, text).
// A tree that parses must survive to_json -> from_json bit for bit (the writer's promise).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_common.hpp"

using namespace flaxpp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Tree target = fuzz::params_target();
  std::string_view text(reinterpret_cast<const char*>(data), size);

  try {
    Tree t = from_json(text);
    std::string again;
    try {
      again = to_json(t);
    } catch (const SerializationError&) {
      again.clear();  // keys that are not valid UTF-8 cannot be written as JSON: fine
    }
    if (!again.empty() && !tree_equal(t, from_json(again)))
      fuzz::die("JSON round trip changed the tree");
  } catch (const SerializationError&) {
  }
  for (bool allow_extra : {false, true}) {
    try {
      fuzz::check_like(target, from_json(target, text, {.allow_extra = allow_extra}));
    } catch (const SerializationError&) {
    }
  }
  return 0;
}
