// Tests for serialization/serialization.hpp: Flax msgpack (golden bytes), JSON, strict restore, files.
//
// The golden hex strings were produced with numpy 1.24 + msgpack-python 1.0.3 running the code of
// flax.serialization (_ndarray_to_bytes, _chunk, msgpack_serialize) and, for JSON,
// json.dumps(jax.tree_util.tree_map(lambda x: np.asarray(x).tolist(), tree)) on the same trees.
#include "serialization/serialization.hpp"

#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>

using namespace flaxpp;
namespace fs = std::filesystem;

namespace {

std::string hex(const std::vector<uint8_t>& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t c : b) {
    s += d[c >> 4];
    s += d[c & 15];
  }
  return s;
}
std::vector<uint8_t> unhex(const std::string& s) {
  std::vector<uint8_t> b;
  for (size_t i = 0; i + 1 < s.size(); i += 2) b.push_back(std::stoi(s.substr(i, 2), nullptr, 16));
  return b;
}
std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }
std::string error_of(auto&& fn) {
  try {
    fn();
  } catch (const SerializationError& e) {
    return e.what();
  }
  return "<no SerializationError>";
}

constexpr float kMax = std::numeric_limits<float>::max();
constexpr float kMin = std::numeric_limits<float>::min();            // smallest normal
constexpr float kDenorm = std::numeric_limits<float>::denorm_min();  // 1.4e-45

// The same tree as the Python generator, in the same insertion order.
Tree edge_tree() {
  return Tree{
      {"params",
       Tree{{"kernel", Array::from({2, 3}, std::vector<float>{1.f, 2.5f, -0.f, 1e-5f, 0.1f, kMax})},
            {"bias", Array::from({6}, std::vector<float>{kDenorm, kMin, -kMax, 1e16f, 1234567.f,
                                                         -2.5e-7f})}}},
      {"step", Array(int32_t{7})},
      {"lr", Array(0.001f)},
      {"mask", Array::from_bool({3}, {true, false, true})},
      {"key", Array::from({2}, std::vector<uint32_t>{0u, 4294967295u})},
      {"ints", Array::from({1, 2}, std::vector<int32_t>{std::numeric_limits<int32_t>::min(),
                                                        std::numeric_limits<int32_t>::max()})},
      {"empty", Tree()},
      {"zeros", Array::empty({2, 0}, DType::float32)},
  };
}

const char* kEdgeMsgpack =
    "88a6706172616d7382a66b65726e656cc7260193920203a7666c6f61743332c4180000803f0000204000000080acc5"
    "2737cdcccc3dffff7f7fa462696173c72501939106a7666c6f61743332c4180100000000008000ffff7fffca1b0e5a"
    "38b49649bd3786b4a473746570c70e019390a5696e743332c40407000000a26c72d8019390a7666c6f61743332c404"
    "6f12833aa46d61736bc70d01939103a4626f6f6cc403010001a36b6579c71401939102a675696e743332c408000000"
    "00ffffffffa4696e7473c7140193920102a5696e743332c40800000080ffffff7fa5656d70747980a57a65726f73c7"
    "0e0193920200a7666c6f61743332c400";

const char* kEdgeJson =
    R"({"params": {"kernel": [[1.0, 2.5, -0.0], [9.999999747378752e-06, 0.10000000149011612, )"
    R"(3.4028234663852886e+38]], "bias": [1.401298464324817e-45, 1.1754943508222875e-38, )"
    R"(-3.4028234663852886e+38, 1.0000000272564224e+16, 1234567.0, -2.499999993688107e-07]}, )"
    R"("step": 7, "lr": 0.0010000000474974513, "mask": [true, false, true], "key": [0, 4294967295], )"
    R"("ints": [[-2147483648, 2147483647]], "empty": {}, "zeros": [[], []]})";

const char* kEdgeJsonSorted =
    R"({"empty": {}, "ints": [[-2147483648, 2147483647]], "key": [0, 4294967295], )"
    R"("lr": 0.0010000000474974513, "mask": [true, false, true], "params": {"bias": )"
    R"([1.401298464324817e-45, 1.1754943508222875e-38, -3.4028234663852886e+38, )"
    R"(1.0000000272564224e+16, 1234567.0, -2.499999993688107e-07], "kernel": [[1.0, 2.5, -0.0], )"
    R"([9.999999747378752e-06, 0.10000000149011612, 3.4028234663852886e+38]]}, "step": 7, )"
    R"("zeros": [[], []]})";

// {'big': arange(10) f32, 'small': f32[3], 'a': {'b': arange(6) i32 (2,3)}}, MAX_CHUNK_SIZE = 16.
const char* kChunkMsgpack =
    "83a362696783b95f5f6d73677061636b5f6368756e6b65645f61727261795f5fc3a5736861706581a1300aa6636875"
    "6e6b7383a130c71d01939104a7666c6f61743332c410000000000000803f0000004000004040a131c71d01939104a7"
    "666c6f61743332c410000080400000a0400000c0400000e040a132c71501939102a7666c6f61743332c40800000041"
    "00001041a5736d616c6cc71901939103a7666c6f61743332c40c0000803f0000004000004040a16181a16283b95f5f"
    "6d73677061636b5f6368756e6b65645f61727261795f5fc3a5736861706582a13002a13103a66368756e6b7382a130"
    "c71b01939104a5696e743332c41000000000010000000200000003000000a131c71301939102a5696e743332c40804"
    "00000005000000";

Array arange(int64_t n, DType dt = DType::float32) {
  if (dt == DType::int32) {
    std::vector<int32_t> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = static_cast<int32_t>(i);
    return Array::from({n}, v);
  }
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i);
  return Array::from({n}, v);
}

Tree dense_vars(const Shape& kernel = {4, 3}) {
  return Tree{{"params", Tree{{"Dense_0", Tree{{"kernel", Array::empty(kernel, DType::float32)},
                                               {"bias", arange(3)}}}}}};
}

}  // namespace

// ---- msgpack -------------------------------------------------------------------------------

TEST_CASE("msgpack: the prefix printed in Flax's docs") {
  // flax 0.3.4 docs/notebooks/flax_basics.ipynb, {'params': {'bias': f32[5], 'kernel': f32[10,5]}}:
  // 81 a6"params" 82 a4"bias" c7 21 01 | 93 91 05 a7"float32" c4 14 <20 bytes>
  // a6"kernel" c7 d6 01 93 92 0a 05 a7"float32" c4 c8 <200 bytes>
  Tree t{{"params", Tree{{"bias", arange(5)}, {"kernel", arange(50).reshaped({10, 5})}}}};
  auto b = to_bytes(t);
  std::string h = hex(b);
  std::string params = "a6" + hex(bytes_of("params")), flt = "a7" + hex(bytes_of("float32"));
  std::string head =
      "81" + params + "82" + "a4" + hex(bytes_of("bias")) + "c72101" + "939105" + flt + "c414";
  CHECK(h.substr(0, head.size()) == head);
  size_t k = head.size() + 40;
  std::string kernel_head = "a6" + hex(bytes_of("kernel")) + "c7d601" + "93920a05" + flt + "c4c8";
  CHECK(h.substr(k, kernel_head.size()) == kernel_head);
  CHECK(b.size() == (k + kernel_head.size()) / 2 + 200);
  // Python (flax code, numpy data 0..4, 0..49) agrees on the first 60 bytes, data included.
  CHECK(h.substr(0, 120) ==
        "81a6706172616d7382a462696173c72101939105a7666c6f61743332c414000000000000803f0000004000"
        "00404000008040a66b65726e656cc7d601");
}

TEST_CASE("msgpack: edge values, scalars, dtypes, empty dicts: Flax's exact bytes") {
  auto b = to_bytes(edge_tree());
  CHECK(hex(b) == kEdgeMsgpack);
  Tree back = from_bytes(b);
  CHECK(tree_equal(back, edge_tree()));  // bit-exact, -0.0 and the denormal included
  CHECK(back.keys() == edge_tree().keys());
  CHECK(back["params"].keys() == std::vector<std::string>{"kernel", "bias"});
  CHECK(back["empty"].is_dict());
  CHECK(back["lr"].array().shape() == Shape{});
  CHECK(std::signbit(back.at("params/kernel").array().data<float>()[2]));

  // NaN payloads and infinities survive msgpack bit for bit.
  uint32_t nan_bits = 0x7fc12345u;
  float nan;
  std::memcpy(&nan, &nan_bits, 4);
  Tree special{{"x", Array::vector({nan, std::numeric_limits<float>::infinity(),
                                    -std::numeric_limits<float>::infinity()})}};
  CHECK(tree_equal(from_bytes(to_bytes(special)), special));
}

TEST_CASE("msgpack: framing agrees with nlohmann::json::to_msgpack (ext/bin/str/uint sizes)") {
  using oj = nlohmann::ordered_json;
  auto ext = [](const Array& a) {
    std::vector<uint8_t> raw(static_cast<const uint8_t*>(a.raw()),
                             static_cast<const uint8_t*>(a.raw()) + a.nbytes());
    oj inner = oj::array({oj(a.shape().vec()), dtype_name(a.dtype()), oj::binary(raw)});
    return oj::binary(oj::to_msgpack(inner), 1);
  };
  std::string long_key(40, 'k');  // str8
  std::vector<Array> arrays = {
      Array(1.f),                           // 16-byte payload: fixext16
      Array::empty({200}, DType::bool_),    // ext8, dim 200: uint8
      Array::empty({300}, DType::float32),  // ext16 + bin16, dim 300: uint16
      Array::empty({70000}, DType::bool_),  // ext32 + bin32, dim 70000: uint32
      Array::empty({0}, DType::int32),
      Array::empty({1, 1, 1, 1, 1, 1, 1, 127}, DType::uint32),
  };
  TreeBuilder tb;
  oj doc = oj::object();
  for (size_t i = 0; i < arrays.size(); ++i) {
    std::string key = (i == 1 ? long_key : "a") + std::to_string(i);
    std::memset(arrays[i].mutable_raw(), 1, arrays[i].nbytes());  // valid for bools too
    tb.set(key, arrays[i]);
    doc[key] = ext(arrays[i]);
  }
  for (int i = 0; i < 20; ++i) {  // map16
    std::string k = "k";
    k += std::to_string(i);  // (not "k" + ...: g++ 12 warns falsely, -Wrestrict)
    tb.set("many/" + k, Array(i));
    doc["many"][k] = ext(Array(i));
  }
  Tree t = tb.build();
  CHECK(hex(to_bytes(t)) == hex(oj::to_msgpack(doc)));
  CHECK(tree_equal(from_bytes(to_bytes(t)), t));
  // ... and nlohmann reads our bytes back as the same document.
  CHECK(oj::from_msgpack(to_bytes(t)) == doc);
}

TEST_CASE("msgpack: chunked arrays exactly as Flax writes them (lowered MAX_CHUNK_SIZE)") {
  Tree t{{"big", arange(10)},
         {"small", Array::vector({1, 2, 3})},
         {"a", Tree{{"b", arange(6, DType::int32).reshaped({2, 3})}}}};
  auto b = to_bytes(t, 16);
  CHECK(hex(b) == kChunkMsgpack);
  Tree back = from_bytes(b);
  CHECK(tree_equal(back, t));
  CHECK(back.at("a/b").array().shape() == Shape{2, 3});
  // Default threshold: no chunking.
  CHECK(from_bytes(to_bytes(t)).at("big").array().size() == 10);
  CHECK(to_bytes(t).size() < b.size());
  // A chunked root array (Flax chunks a bare ndarray too).
  Tree root(arange(9));
  CHECK(tree_equal(from_bytes(to_bytes(root, 8)), root));
}

TEST_CASE("msgpack: numpy-scalar ExtType 3 and plain Python scalars are read") {
  // {'s': ExtType(3, packb(((), 'float32', b'\0\0\xc0\x3f')))} -> 1.5
  auto b = unhex(
      "81a173d803"
      "9390a7666c6f61743332c404"
      "0000c03f");
  Tree t = from_bytes(b);
  CHECK(t["s"].array().shape() == Shape{});
  CHECK(t["s"].array().item<float>() == 1.5f);
  // {'step': 300, 'neg': -5, 'flag': True, 'x': 0.5 (float64)}
  Tree p = from_bytes(unhex("84a473746570cd012ca36e6567fba4666c6167c3a178cb3fe0000000000000"));
  CHECK(p["step"].array().dtype() == DType::int32);
  CHECK(p["step"].array().item<int32_t>() == 300);
  CHECK(p["neg"].array().item<int32_t>() == -5);
  CHECK(p["flag"].array().dtype() == DType::bool_);
  CHECK(p["x"].array().item<float>() == 0.5f);
}

TEST_CASE("msgpack: malformed input throws SerializationError naming the path") {
  auto good = to_bytes(dense_vars());
  std::vector<uint8_t> truncated(good.begin(), good.end() - 5);
  CHECK(error_of([&] { from_bytes(truncated); }).find("params/Dense_0/bias: truncated input") !=
        std::string::npos);
  auto trailing = good;
  trailing.push_back(0xc0);
  CHECK(error_of([&] { from_bytes(trailing); }).find("trailing bytes") != std::string::npos);
  // float64 array: {'w': ExtType(1, packb(((1,), 'float64', 8 bytes)))}
  auto f64 = unhex("81a177c71501939101a7666c6f61743634c4080000000000000000");
  CHECK(error_of([&] { from_bytes(f64); }) ==
        "from_bytes: w: dtype 'float64' is not supported (flaxpp has float32, int32, uint32, bool) "
        "in an ndarray payload (byte 11)");
  // 4 bytes of data for a float32 (2,)
  auto short_data = unhex("81a177c71101939102a7666c6f61743332c40400000000");
  CHECK(error_of([&] {
          from_bytes(short_data);
        }).find("w: array bytes: 4 bytes, but float32(2,) needs 8") != std::string::npos);
  CHECK(error_of([&] { from_bytes(unhex("81a178c0")); }).find("x: unexpected msgpack nil") !=
        std::string::npos);
  CHECK(error_of([&] { from_bytes(unhex("8101c0")); }).find("a map key is not a string") !=
        std::string::npos);
  CHECK(error_of([&] { from_bytes(unhex("81a3612f62c3")); }).find("contains '/'") !=
        std::string::npos);
  CHECK_THROWS_AS(from_bytes(std::vector<uint8_t>{}), SerializationError);
}

// ---- JSON ----------------------------------------------------------------------------------

TEST_CASE("JSON: exactly what Python's json.dumps writes; sort_keys gives the tree_map order") {
  CHECK(to_json(edge_tree()) == kEdgeJson);
  CHECK(to_json(edge_tree(), {.sort_keys = true}) == kEdgeJsonSorted);
  CHECK(to_json(Tree()) == "{}");
  CHECK(to_json(Tree(Array(2.f))) == "2.0");
  CHECK(to_json(Tree{{"caf\xc3\xa9\"", Array(true)}}) == R"({"caf\u00e9\"": true})");
}

TEST_CASE("JSON: round trips bit-exactly, with or without a target") {
  Tree edge = edge_tree();
  Tree back = from_json(to_json(edge));
  // Without a target, "zeros" ([[], []]) has no numbers to infer a dtype from (int32, (2,0)).
  CHECK(back.keys() == edge.keys());
  CHECK(back.at("zeros").array().shape() == Shape{2, 0});
  CHECK(tree_equal(back.erase("zeros"), edge.erase("zeros")));
  CHECK(tree_equal(from_json(edge, to_json(edge)), edge));
  CHECK(tree_equal(from_json(edge, to_json(edge, {.sort_keys = true})), edge));
  CHECK(from_json(edge, to_json(edge, {.sort_keys = true})).keys() == edge.keys());

  // Every float32 bit pattern class: sweep exponents and mantissas.
  std::vector<float> v;
  for (uint32_t e = 0; e < 255; e += 3)
    for (uint32_t m : {0u, 1u, 0x7fffffu, 0x400000u, 0x123457u}) {
      uint32_t bits = (e << 23) | m;
      float f;
      std::memcpy(&f, &bits, 4);
      v.push_back(f);
      v.push_back(-f);
    }
  Tree sweep{{"v", Array::from({static_cast<int64_t>(v.size())}, v)}};
  CHECK(tree_equal(from_json(to_json(sweep)), sweep));

  Tree nan{{"x", Array::vector({std::numeric_limits<float>::quiet_NaN(),
                                std::numeric_limits<float>::infinity(),
                                -std::numeric_limits<float>::infinity()})}};
  CHECK(to_json(nan) == R"({"x": [NaN, Infinity, -Infinity]})");
  auto x = from_json(to_json(nan)).at("x").array().to_float();
  CHECK(std::isnan(x[0]));
  CHECK(x[1] == std::numeric_limits<float>::infinity());
  CHECK(x[2] == -std::numeric_limits<float>::infinity());
  CHECK(error_of([&] { to_json(nan, {.allow_nan = false}); }) ==
        "to_json: x: NaN is not valid JSON (JsonOptions::allow_nan is false)");
}

TEST_CASE("JSON: big float arrays (printed by two threads) round-trip in order") {
  // (700, 500) = 350,000 floats: above the two-thread threshold; values differ per position.
  std::vector<float> v(350000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 1.0001f - 17.5f;
  Tree t{{"w", Array::from({700, 500}, v)}, {"v", Array::from({350000}, v)}};
  std::string j = to_json(t);
  CHECK(j.substr(0, 36) == R"({"w": [[-17.5, -16.499900817871094, )");
  CHECK(tree_equal(from_json(j), t));
  CHECK(tree_equal(from_json(t, j), t));
  v[349999] = std::numeric_limits<float>::quiet_NaN();  // an error in the second thread
  Tree bad{{"w", Array::from({700, 500}, v)}};
  CHECK(error_of([&] { to_json(bad, {.allow_nan = false}); }) ==
        "to_json: w: NaN is not valid JSON (JsonOptions::allow_nan is false)");
}

TEST_CASE("JSON: big lists (parsed by two threads) keep the one-thread results and errors") {
  std::string ints = "[", ragged = "[";
  for (int i = 0; i < 600000; ++i) ints += (i ? ", " : "") + std::to_string(i - 300000);
  for (int i = 0; i < 1000000; ++i)
    ragged += std::string(i ? ", " : "") + (i == 800000 ? "[1, 2]" : "[3]");
  ints += "]";
  ragged += "]";
  Array a = from_json(ints).array();
  CHECK(a.dtype() == DType::int32);
  CHECK(a.shape() == Shape{600000});
  CHECK(a.data<int32_t>()[599999] == 299999);
  CHECK(error_of([&] { from_json(ragged); }) ==
        "from_json: line 1, column 4000008: <root>: ragged nested list at depth 1: lists of length "
        "1 and 2");
  CHECK(error_of([&] { from_json(ints.substr(0, ints.size() - 1)); }) ==
        "from_json: line 1, column " + std::to_string(ints.size()) + ": unexpected end of input");
  // rank 3, with a float only in the second half: the halves' dtypes merge to float32
  std::string r3 = "[";
  for (int i = 0; i < 500000; ++i)
    r3 += std::string(i ? ", " : "") + (i == 499999 ? "[[0.5, 1]]" : "[[1, 2]]");
  r3 += "]";
  Array b = from_json(r3).array();
  CHECK(b.shape() == Shape{500000, 1, 2});
  CHECK(b.dtype() == DType::float32);
  CHECK(b.data<float>()[999998] == 0.5f);
}

TEST_CASE("JSON: dtype inference without a target, conversion with one") {
  Tree t = from_json(R"({"f": [1.0, 2], "i": [[1, -2]], "u": 4294967295, "b": [true], )"
                     R"("e": [], "s": 1e3, "n": {}})");
  CHECK(t["f"].array().dtype() == DType::float32);
  CHECK(t["i"].array().dtype() == DType::int32);
  CHECK(t["i"].array().shape() == Shape{1, 2});
  CHECK(t["u"].array().dtype() == DType::uint32);
  CHECK(t["u"].array().shape() == Shape{});
  CHECK(t["b"].array().dtype() == DType::bool_);
  CHECK(t["e"].array().shape() == Shape{0});
  CHECK(t["s"].array().item<float>() == 1000.f);
  CHECK(t["n"].is_dict());
  CHECK(t.keys() == std::vector<std::string>{"f", "i", "u", "b", "e", "s", "n"});

  // Against a target: [] fits a (0, 3) leaf; integer literals are not float32.
  Tree target{{"w", Array::empty({2}, DType::float32)},
              {"z", Array::empty({0, 3}, DType::float32)}};
  Tree r = from_json(target, R"({"z": [], "w": [1.0, 2e0]})");
  CHECK(error_of([&] { from_json(target, R"({"z": [], "w": [1, 2]})"); }) ==
        "restore: w: dtype int32 in file, float32 in target");
  Tree utarget{{"key", Array::from({2}, std::vector<uint32_t>{0, 0})}};
  CHECK(from_json(utarget, R"({"key": [0, 4294967295]})")["key"].array().data<uint32_t>()[1] ==
        4294967295u);
  CHECK(from_json(utarget, R"({"key": [1, 2]})")["key"].array().dtype() == DType::uint32);
  CHECK(error_of([&] { from_json(utarget, R"({"key": [-1, 2]})"); }) ==
        "from_json: line 1, column 16: key: integer -1 out of range for uint32");
  CHECK(r["w"].array().dtype() == DType::float32);
  CHECK(r["z"].array().shape() == Shape{0, 3});
  CHECK(r.keys() == std::vector<std::string>{"w", "z"});  // the target's order
  Tree itarget{{"step", Array(int32_t{0})}};
  CHECK(error_of([&] { from_json(itarget, R"({"step": 1.5})"); }) ==
        "restore: step: dtype float32 in file, int32 in target");
  CHECK(error_of([&] { from_json(itarget, R"({"step": 3000000000})"); }) ==
        "from_json: line 1, column 20: step: integer 3000000000 out of range for int32");
  CHECK(error_of([&] { from_json(target, R"({"z": [], "w": [true, false]})"); }) ==
        "restore: w: dtype bool in file, float32 in target");
}

TEST_CASE("JSON: malformed and ragged input name the path") {
  CHECK(
      error_of([] { from_json(R"({"a": {"k": [[1, 2], [3]]}})"); }) ==
      "from_json: line 1, column 25: a/k: ragged nested list at depth 1: lists of length 2 and 1");
  CHECK(error_of([] { from_json(R"({"a": [[1], 2]})"); }).find("a: ragged nested list") !=
        std::string::npos);
  CHECK(error_of([] { from_json(R"({"a": [1, true]})"); }).find("a: a list mixing booleans") !=
        std::string::npos);
  CHECK(error_of([] { from_json("{\"a\": [1,\n 2,, 3]}"); }).find("line 2, column 4") !=
        std::string::npos);
  CHECK(error_of([] { from_json(R"({"a": 1} x)"); }).find("trailing characters") !=
        std::string::npos);
  CHECK(error_of([] { from_json(R"({"a": 1, "a": 2})"); }).find("duplicate key 'a'") !=
        std::string::npos);
  CHECK(error_of([] { from_json(R"({"a": "text"})"); }).find("a: expected a number") !=
        std::string::npos);
  CHECK(error_of([] { from_json(R"({"a": [1, 2)"); }).find("unexpected end of input") !=
        std::string::npos);
  CHECK(from_json(R"({"caf\u00e9": 1})").keys()[0] == "caf\xc3\xa9");
}

// ---- restore against a target --------------------------------------------------------------

TEST_CASE("restore: every mismatch names the path and both sides") {
  Tree target = dense_vars({3, 3});
  auto file = to_bytes(dense_vars({4, 3}));
  CHECK(error_of([&] { from_bytes(target, file); }) ==
        "restore: params/Dense_0/kernel: shape (4,3) in file, (3,3) in target");
  CHECK(error_of([&] {
          from_json(target, to_json(dense_vars({4, 3})));
        }) == "restore: params/Dense_0/kernel: shape (4,3) in file, (3,3) in target");

  Tree missing = dense_vars().erase("params/Dense_0/bias");
  CHECK(error_of([&] { from_bytes(dense_vars(), to_bytes(missing)); }) ==
        "restore: params/Dense_0/bias: missing in file (target has array float32(3,))");

  Tree extra = dense_vars().set("params/Dense_1/kernel", arange(2));
  CHECK(error_of([&] { from_bytes(dense_vars(), to_bytes(extra)); }) ==
        "restore: params/Dense_1: unexpected in file (dict with keys [kernel], not in target; "
        "RestoreOptions{.allow_extra = true} ignores it)");
  Tree ok = from_bytes(dense_vars(), to_bytes(extra), {.allow_extra = true});
  CHECK_FALSE(ok.contains("params/Dense_1"));
  CHECK(from_json(dense_vars(), to_json(extra), {.allow_extra = true}).keys() ==
        std::vector<std::string>{"params"});

  Tree ints = dense_vars().set("params/Dense_0/bias", arange(3, DType::int32));
  CHECK(error_of([&] { from_bytes(dense_vars(), to_bytes(ints)); }) ==
        "restore: params/Dense_0/bias: dtype int32 in file, float32 in target");

  Tree leaf_for_dict = Tree{{"params", arange(2)}};
  CHECK(error_of([&] { from_bytes(dense_vars(), to_bytes(leaf_for_dict)); }) ==
        "restore: params: array float32(2,) in file, dict with keys [Dense_0] in target");

  // The result follows the target's key order, whatever the file's.
  Tree reordered{
      {"params", Tree{{"Dense_0", Tree{{"bias", arange(3)},
                                       {"kernel", Array::empty({4, 3}, DType::float32)}}}}}};
  Tree r = from_state_dict(dense_vars(), reordered);
  CHECK(r["params"]["Dense_0"].keys() == std::vector<std::string>{"kernel", "bias"});
}

// ---- files ---------------------------------------------------------------------------------

namespace {
fs::path scratch_dir(const std::string& name) {
  fs::path d = fs::path(FLAXPP_BINARY_DIR) / "test_scratch" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
size_t count_files(const fs::path& d) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(d), fs::directory_iterator()));
}
}  // namespace

TEST_CASE("save / load: both formats by extension, with and without a target") {
  fs::path d = scratch_dir("save_load");
  Tree edge = edge_tree();
  save(d / "m.msgpack", edge);
  save(d / "m.json", edge);
  CHECK(hex(bytes_of(slurp(d / "m.msgpack"))) == kEdgeMsgpack);
  CHECK(slurp(d / "m.json") == kEdgeJson);
  CHECK(tree_equal(load(d / "m.msgpack"), edge));
  CHECK(tree_equal(load(d / "m.json", edge), edge));
  // No temporary files left; m.json.meta keeps the dtypes and shapes JSON cannot show.
  CHECK(count_files(d) == 3);
  CHECK(fs::exists(d / "m.json.meta"));
  CHECK(tree_equal(load(d / "m.json"), edge));  // exact without a target too

  CHECK(error_of([&] { save(d / "m.txt", edge); }) ==
        (d / "m.txt").string() +
            ": unknown checkpoint format '.txt' (use .json, .msgpack or .safetensors)");
  CHECK(error_of([&] { load(d / "nope.msgpack"); }) ==
        "load: " + (d / "nope.msgpack").string() + ": cannot open: No such file or directory");
  std::string e = error_of([&] { load(d / "m.msgpack", dense_vars()); });
  CHECK(e.find("load: " + (d / "m.msgpack").string() + ": restore: ") == 0);
}

TEST_CASE("save is atomic: a failed save leaves the old file byte-identical") {
  fs::path d = scratch_dir("atomic");
  Tree old_tree = dense_vars();
  save(d / "ckpt.json", old_tree);
  save(d / "ckpt.msgpack", old_tree);
  std::string old_json = slurp(d / "ckpt.json"), old_msgpack = slurp(d / "ckpt.msgpack");

  // 1. Serialization throws midway (a NaN deep in the tree with allow_nan = false).
  Tree bad =
      edge_tree().set("zz/late", Array::vector({1.f, std::numeric_limits<float>::quiet_NaN()}));
  std::string e = error_of([&] { save(d / "ckpt.json", bad, {.json = {.allow_nan = false}}); });
  CHECK(e == "save: " + (d / "ckpt.json").string() +
                 ": to_json: zz/late: NaN is not valid JSON (JsonOptions::allow_nan is false)");
  CHECK(slurp(d / "ckpt.json") == old_json);
  CHECK(count_files(d) == 2);

  // 2. The disk fills up: a file-size limit makes write() fail with EFBIG (works as root too).
  Tree big{{"w", Array::empty({1 << 16}, DType::float32)}};
  struct rlimit old_limit {};
  getrlimit(RLIMIT_FSIZE, &old_limit);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 4096;
  REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string e_msgpack = error_of([&] { save(d / "ckpt.msgpack", big); });
  std::string e_json = error_of([&] { save(d / "ckpt.json", big); });
  setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  CHECK(e_msgpack == "save: " + (d / "ckpt.msgpack").string() + ": write failed: File too large");
  CHECK(e_json.find("save: " + (d / "ckpt.json").string() + ": write failed") == 0);
  CHECK(slurp(d / "ckpt.msgpack") == old_msgpack);
  CHECK(slurp(d / "ckpt.json") == old_json);
  CHECK(count_files(d) == 2);

  // 3. The directory does not exist.
  fs::path nowhere = d / "missing_dir" / "ckpt.msgpack";
  std::string e3 = error_of([&] { save(nowhere, old_tree); });
  CHECK(e3.find("save: " + nowhere.string() + ": cannot create a temporary file in ") == 0);
  CHECK(e3.find("No such file or directory") != std::string::npos);

  // And a successful save replaces the file.
  save(d / "ckpt.msgpack", big);
  CHECK(tree_equal(load(d / "ckpt.msgpack"), big));
}
