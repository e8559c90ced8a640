// Writes the seed corpora of the fuzz targets: fuzz/corpus/<target>/<name>. Run by
// `scripts/fuzz --seeds`; the generated files are small and committed.
//   seed_corpus <fuzz dir>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "fuzz_common.hpp"

using namespace flaxpp;
namespace fs = std::filesystem;

namespace {

void put(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary | std::ios::trunc) << bytes;
}
std::string str(const std::vector<uint8_t>& b) { return {b.begin(), b.end()}; }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: seed_corpus <fuzz dir>\n");
    return 2;
  }
  fs::path corpus = fs::path(argv[1]) / "corpus";
  const Tree target = fuzz::params_target();
  const float inf = std::numeric_limits<float>::infinity();
  const Tree odd{{"x", Array::from({4}, std::vector<float>{std::numeric_limits<float>::quiet_NaN(),
                                                           inf, -inf, 1e-45f})},
                 {"caf\xc3\xa9 \"q\"", Array::from({1, 2, 1}, std::vector<int32_t>{-1, 2})},
                 {"nested", Tree{{"deeper", Tree{{"e", Array::empty({2, 0}, DType::int32)}}}}},
                 {"u", Array::from({}, std::vector<uint32_t>{3000000000u})}};

  // JSON: the target (both key orders), odd values, a scalar root, an empty dict.
  fs::path json = corpus / "fuzz_json";
  put(json, "target.json", to_json(target));
  put(json, "target_sorted.json", to_json(target, {.sort_keys = true}));
  put(json, "odd.json", to_json(odd));
  put(json, "scalar.json", "-0.0");
  put(json, "empty.json", "{}");
  put(json, "escapes.json",
      "{\"a\\u00e9\\n\": [[true, false]], \"b\": [1e-05, 3.4028234663852886e+38]}");

  // msgpack: the same trees, one chunked, and Python scalars in a state dict.
  fs::path mp = corpus / "fuzz_msgpack";
  put(mp, "target.msgpack", str(to_bytes(target)));
  put(mp, "odd.msgpack", str(to_bytes(odd)));
  put(mp, "chunked.msgpack",
      str(to_bytes(Tree{{"w", Array::from({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6})}}, 8)));
  // {"a": True, "b": -5, "c": 1.5 (float64), "d": 2**32 - 1 (uint32)}
  const std::vector<uint8_t> scalars{0x84, 0xa1, 'a',  0xc3, 0xa1, 'b',  0xfb, 0xa1, 'c',
                                     0xcb, 0x3f, 0xf8, 0,    0,    0,    0,    0,    0,
                                     0xa1, 'd',  0xce, 0xff, 0xff, 0xff, 0xff};
  put(mp, "python_scalars.msgpack", str(scalars));
  // Regression inputs (tests/reliability/fuzz_regressions_test.cpp) as starting points: nested
  // maps declaring 2^32 entries; a (2^32 - 1, 0) float32 array.
  std::string deep;
  for (int i = 0; i < 4; ++i)
    deep += std::string(
        "\xdf\xff\xff\xff\xff\xa1"
        "a",
        7);
  put(mp, "deep_maps.msgpack", deep);
  put(mp, "empty_huge.msgpack",
      std::string("\xc7\x12\x01\x93\x92\xce\xff\xff\xff\xff\x00\xa7"
                  "float32\xc4\x00",
                  21));

  // safetensors: the target (both separators), the odd values (a key with '.' is not writable
  // with '.', so '/'), metadata, an empty file.
  fs::path st = corpus / "fuzz_safetensors";
  put(st, "target.safetensors", str(to_safetensors(target)));
  put(st, "target_slash.safetensors", str(to_safetensors(target, {.separator = '/'})));
  put(st, "odd.safetensors", str(to_safetensors(odd, {.separator = '/'})));
  put(st, "metadata.safetensors",
      str(to_safetensors(target, {.metadata = {{"format", "flax"}, {"k", "v"}}})));
  put(st, "empty.safetensors", str(to_safetensors(Tree::dict({}))));

  // Checkpoints: the TrainState state dict at step 0 and after one step.
  fs::path ck = corpus / "fuzz_checkpoint";
  auto state = fuzz::train_state_target();
  put(ck, "step0.msgpack", str(to_bytes(state.state_dict())));
  auto grads = tree_map(
      [](const Array& p) { return Array::from(p.shape(), std::vector<float>(p.size(), 0.1f)); },
      state.params);
  put(ck, "step1.msgpack", str(to_bytes(state.apply_gradients(grads).state_dict())));
  put(ck, "step1_chunked.msgpack", str(to_bytes(state.apply_gradients(grads).state_dict(), 16)));
  // Edits for fuzz_json_big: (region, offset hi, offset lo, byte); none, a digit, a ']' near the
  // split point, a space at the list's end.
  fs::path big = corpus / "fuzz_json_big";
  put(big, "no_edit", "");
  put(big, "digit_mid",
      std::string("\x00\x01\x00"
                  "7",
                  4));
  put(big, "bracket_mid", std::string("\x00\x02\x10]\x00\x02\x11,", 8));
  put(big, "space_end", std::string("\x01\x00\x01 ", 4));
  put(big, "semicolon_end", std::string("\x01\xc2\x07;", 4));  // slow-unit-0a3cf99c's one edit
  std::printf("seed corpora written under %s\n", corpus.c_str());
  return 0;
}
