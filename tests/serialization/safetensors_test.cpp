// Tests for serialization/safetensors.cpp. The exact bytes come from the reference
// implementation's own tests (huggingface/safetensors, safetensors/src/tensor.rs:
// test_serialization, test_serialization_forced_alignement, test_empty); the ordering rule
// (dtype alignment descending, then name) and the checks on reading are that file's too.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <sys/resource.h>

#include "core/ops.hpp"
#include "core/random.hpp"
#include "serialization/serialization.hpp"

using namespace flaxpp;
namespace fs = std::filesystem;

namespace {

// The 8-byte little-endian length, the header text, then the data.
std::vector<uint8_t> file_of(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

void expect_error(const std::vector<uint8_t>& bytes, const std::string& fragment) {
  CAPTURE(fragment);
  try {
    from_safetensors(bytes);
    FAIL("no error");
  } catch (const SerializationError& e) {
    CHECK_MESSAGE(std::string(e.what()).find(fragment) != std::string::npos, e.what());
  }
}

// The header text of a file (its length is the first 8 bytes, little-endian).
std::string header_of(const std::vector<uint8_t>& file) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{file[i]} << (8 * i);
  return std::string(file.begin() + 8, file.begin() + 8 + static_cast<long>(n));
}

bool same_bits(const Array& a, const Array& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

}  // namespace

TEST_CASE("safetensors: the reference implementation's bytes") {
  Array x = Array::from({1, 2, 3}, std::vector<float>{0, 1, 2, 3, 4, 5});
  // test_serialization: "attn.0", F32 (1, 2, 3); the header is exactly 64 bytes, no padding.
  const std::string h1 = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  REQUIRE(h1.size() == 64);
  Tree nested{{"attn", Tree{{"0", x}}}};
  CHECK(to_safetensors(nested) == file_of(h1, f32_bytes({0, 1, 2, 3, 4, 5})));
  // test_serialization_forced_alignement: "attn0", (1, 1, 2, 3): 65 bytes padded to 72.
  Array x4 = jnp::reshape(x, {1, 1, 2, 3});
  const std::string h2 = R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})";
  CHECK(to_safetensors(Tree{{"attn0", x4}}) ==
        file_of(h2 + std::string(7, ' '), f32_bytes({0, 1, 2, 3, 4, 5})));
  // test_empty: "{}" padded to 8; with metadata {"framework": "pt"}, 35 bytes padded to 40.
  CHECK(to_safetensors(Tree::dict({})) == file_of("{}      ", {}));
  CHECK(to_safetensors(Tree::dict({}), {.metadata = {{"framework", "pt"}}}) ==
        file_of(R"({"__metadata__":{"framework":"pt"}})" + std::string(5, ' '), {}));
  // Read back: the nested tree, the bits, and the metadata.
  Tree back = from_safetensors(file_of(h1, f32_bytes({0, 1, 2, 3, 4, 5})));
  REQUIRE(back.keys() == std::vector<std::string>{"attn"});
  CHECK(same_bits(back["attn"]["0"].array(), x));
  Safetensors meta =
      read_safetensors(to_safetensors(Tree::dict({}), {.metadata = {{"framework", "pt"}}}));
  CHECK(meta.metadata == std::map<std::string, std::string>{{"framework", "pt"}});
  CHECK(meta.tree.size() == 0);
}

TEST_CASE("safetensors: tensors ordered by dtype alignment, then name; offsets without gaps") {
  Tree t{{"b", jnp::ones({2})},
         {"a", Array::from({1}, std::vector<int32_t>{7})},
         {"c", Array::from_bool({3}, {true, false, true})},
         {"d", Array::from({1}, std::vector<uint32_t>{9})},
         {"a2", jnp::zeros({1})}};
  // Reference order: F32 (a2, b), then U32 (d), I32 (a), BOOL (c); each range starts where the
  // previous ended.
  const std::string want = R"({"a2":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
                           R"("d":{"dtype":"U32","shape":[1],"data_offsets":[12,16]},)"
                           R"("a":{"dtype":"I32","shape":[1],"data_offsets":[16,20]},)"
                           R"("c":{"dtype":"BOOL","shape":[3],"data_offsets":[20,23]}})";
  auto bytes = to_safetensors(t);
  std::string header = header_of(bytes);
  CHECK(header == want + std::string((8 - want.size() % 8) % 8, ' '));
  CHECK(bytes.size() == 8 + header.size() + 23);
  Tree back = from_safetensors(bytes);
  for (const auto& k : t.keys()) CHECK(same_bits(back[k].array(), t[k].array()));
  // A target restores in the target's key order and checks shapes and dtypes.
  Tree restored = from_safetensors(t, bytes);
  CHECK(restored.keys() == t.keys());
}

TEST_CASE("safetensors: nested trees with '.' or '/', scalars, round trips through files") {
  auto keys = random::split(random::PRNGKey(3), 2);
  Tree params{{"params", Tree{{"Dense_0", Tree{{"kernel", random::normal(keys[0], {4, 3})},
                                               {"bias", jnp::zeros({3})}}},
                              {"scale", Array(2.5f)},
                              {"step", Array::from({}, std::vector<int32_t>{12})}}}};
  for (char sep : {'.', '/'}) {
    CAPTURE(sep);
    auto bytes = to_safetensors(params, {.separator = sep});
    std::string header = header_of(bytes);
    CHECK(header.find(std::string("\"params") + sep + "Dense_0" + sep + "kernel\"") !=
          std::string::npos);
    Tree back = from_safetensors(params, bytes, {}, sep);
    CHECK(same_bits(back["params"]["Dense_0"]["kernel"].array(),
                    params["params"]["Dense_0"]["kernel"].array()));
    CHECK(same_bits(back["params"]["scale"].array(), params["params"]["scale"].array()));
    CHECK(same_bits(back["params"]["step"].array(), params["params"]["step"].array()));
  }
  fs::path dir = fs::temp_directory_path() / ("flaxpp_safetensors_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path f = dir / "model.safetensors";
  save(f, params, {.safetensors = {.metadata = {{"format", "flax"}}}});
  Tree loaded = load(f, params);
  CHECK(same_bits(loaded["params"]["Dense_0"]["kernel"].array(),
                  params["params"]["Dense_0"]["kernel"].array()));
  Safetensors with_meta = load_safetensors(f);
  CHECK(with_meta.metadata.at("format") == "flax");
  // With a checksum sidecar (as checkpoints are saved), a flipped data byte is refused.
  fs::path summed = dir / "summed.safetensors";
  save(summed, params, {.checksum = true});
  CHECK(same_bits(load_safetensors(summed).tree["params"]["scale"].array(),
                  params["params"]["scale"].array()));
  {
    std::fstream io(summed, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(-1, std::ios::end);
    io.put('\x7f');
  }
  CHECK_THROWS_WITH_AS(load(summed), doctest::Contains("checksum mismatch"), SerializationError);
  CHECK_THROWS_WITH_AS(load_safetensors(summed), doctest::Contains("checksum mismatch"),
                       SerializationError);
  // A key holding the separator cannot be written; the good file stays as it was.
  auto before = fs::file_size(f);
  Tree bad{{"a.b", jnp::ones({1})}};
  CHECK_THROWS_WITH_AS(save(f, bad), doctest::Contains("key 'a.b' contains the separator '.'"),
                       SerializationError);
  CHECK(fs::file_size(f) == before);
  CHECK(load(f, params).size() == 1);
  // A file's error names the file.
  fs::path broken = dir / "broken.safetensors";
  std::ofstream(broken, std::ios::binary) << "abc";
  CHECK_THROWS_WITH_AS(load(broken), doctest::Contains("broken.safetensors"), SerializationError);
  fs::remove_all(dir);
  CHECK_THROWS_WITH_AS(to_safetensors(Tree(jnp::ones({2}))),
                       doctest::Contains("the root must be a dict"), SerializationError);
}

TEST_CASE("safetensors: a lying or malformed header is an error naming the tensor and bytes") {
  const auto data = f32_bytes({1, 2, 3, 4});
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  CHECK_NOTHROW(from_safetensors(file_of(ok, data)));
  expect_error({1, 2, 3}, "truncated input: 3 bytes");
  {
    auto b = file_of(ok, data);
    b[0] = 0xff;  // header length 255 + ...: more than the file holds
    expect_error(b, "but only");
    std::vector<uint8_t> huge(8, 0);
    huge[4] = 1;  // 2^32 > the 100,000,000-byte limit
    expect_error(huge, "exceeds the limit of 100000000 bytes");
  }
  expect_error(file_of(R"({"w":{"dtype":"F32")", data), "is not valid JSON");
  expect_error(file_of("[1, 2]", {}), "the header is not a JSON object");
  expect_error(file_of(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                       f32_bytes({1, 2})),
               "names 'w' twice");
  expect_error(file_of(R"({"w":{"dtype":"F7","shape":[2,2],"data_offsets":[0,16]}})", data),
               "tensor 'w': unknown dtype \"F7\"");
  expect_error(file_of(R"({"w":{"dtype":"BF16","shape":[8],"data_offsets":[0,16]}})", data),
               "tensor 'w': dtype BF16 is not supported (flaxpp reads BOOL, I32, U32, F32)");
  expect_error(file_of(R"({"w":{"dtype":"F32","shape":[2,2]}})", data), "tensor 'w': expected");
  expect_error(file_of(R"({"w":{"dtype":"F32","shape":[2,-2],"data_offsets":[0,16]}})", data),
               "tensor 'w': a dimension must be a non-negative integer, got -2");
  expect_error(file_of(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[16,0]}})", data),
               "tensor 'w': data_offsets [16,0] end before they begin");
  expect_error(file_of(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", data),
               "tensor 'w': data_offsets [0,16] hold 16 bytes, but F32 [2,3] needs 24");
  expect_error(
      file_of(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})",
              data),
      "overflows a 64-bit byte count");
  expect_error(
      file_of(R"({"w":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})", data),
      "rank 9 exceeds the limit of 8");
  // Ranges: overlapping, leaving a gap, ending early or past the end. Byte ranges are the file's
  // (the data starts after 8 + header bytes).
  const std::string two = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  const uint64_t start = 8 + two.size();
  expect_error(file_of(two, f32_bytes({1, 2, 3})),
               "tensor 'b' (bytes [" + std::to_string(start + 4) + ", " +
                   std::to_string(start + 12) + ") of the file) overlaps tensor 'a'");
  const std::string gap = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expect_error(file_of(gap, f32_bytes({1, 2})), "leaves bytes [" + std::to_string(8 + gap.size()) +
                                                    ", " + std::to_string(8 + gap.size() + 4) +
                                                    ") unused");
  expect_error(file_of(ok, f32_bytes({1, 2, 3})), "(truncated input)");
  expect_error(file_of(ok, f32_bytes({1, 2, 3, 4, 5})), "(trailing bytes)");
  expect_error(file_of(R"({"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", {1, 2}),
               "tensor 'm': BOOL byte");
  expect_error(
      file_of(R"({"a..b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f32_bytes({1})),
      "tensor 'a..b': an empty key between separators '.'");
  expect_error(file_of(R"({"__metadata__":{"k":1}})", {}),
               "__metadata__: 'k' must be a string, got 1");
  expect_error(file_of(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("a.b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                       f32_bytes({1, 2})),
               "from_safetensors: ");
}

TEST_CASE("safetensors: loading a file maps it and gives its pages back (peak RSS)") {
  // 64 MiB of float32: the peak during load grows by about the tree, not the tree plus the file.
  const int64_t n = 16 * 1024 * 1024;
  fs::path f = fs::temp_directory_path() /
               ("flaxpp_safetensors_rss_" + std::to_string(::getpid()) + ".safetensors");
  {  // written piecewise, so that this process has never held the tree before loading it
    std::string header = R"({"w":{"dtype":"F32","shape":[)" + std::to_string(n) +
                         R"(],"data_offsets":[0,)" + std::to_string(4 * n) + "]}}";
    header.append((8 - header.size() % 8) % 8, ' ');
    auto head = file_of(header, {});
    std::ofstream out(f, std::ios::binary);
    out.write(reinterpret_cast<const char*>(head.data()),
              static_cast<std::streamsize>(head.size()));
    std::vector<float> chunk(1 << 20, 1.f);
    for (int64_t done = 0; done < n; done += static_cast<int64_t>(chunk.size()))
      out.write(reinterpret_cast<const char*>(chunk.data()),
                static_cast<std::streamsize>(chunk.size() * 4));
  }
  auto max_rss_mib = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
  };
  const double before = max_rss_mib();
  Tree t = load(f);
  const double grown = max_rss_mib() - before;
  fs::remove(f);
  CHECK(t["w"].array().size() == n);
  CHECK(t["w"].array().data<float>()[n - 1] == 1.f);
  // The tree is 64 MiB; mapping plus copy without giving pages back would need 128. The bound
  // leaves 32 MiB for allocator slack and the pages in flight.
  CHECK_MESSAGE(grown < 96, "peak RSS grew by " << grown << " MiB loading a 64 MiB tree");
}
