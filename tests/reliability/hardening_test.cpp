// Issue #21's numbered cases, one regression test each (the number in the test name):
// sizes that overflow, JSON round trips that changed dtypes, training directories two runs
// share, CLI output over its input, reshape's negative dimensions, errors that said too little.
// The CLI cases run the built binary (FLAXPP_BINARY_DIR/bin/flaxpp and bin/train_charlm).
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>

#include "core/ops.hpp"
#include "core/random.hpp"
#include "core/tree.hpp"
#include "serialization/serialization.hpp"

using namespace flaxpp;
namespace fs = std::filesystem;
namespace rnd = flaxpp::random;

namespace {

// Runs f, requires an exception of type E and checks that its message contains every piece.
template <class E, class F>
std::string expect_error(F&& f, std::initializer_list<std::string> pieces) {
  std::string msg;
  bool thrown = false;
  try {
    f();
  } catch (const E& e) {
    thrown = true;
    msg = e.what();
  }
  REQUIRE_MESSAGE(thrown, "expected an exception");
  for (const auto& p : pieces)
    CHECK_MESSAGE(msg.find(p) != std::string::npos, "'" << p << "' not in: " << msg);
  return msg;
}

}  // namespace

TEST_CASE("#1 a shape whose size overflows int64 is an error naming the op and the shape") {
  const int64_t big = int64_t{1} << 32;
  expect_error<std::invalid_argument>([&] { jnp::zeros({big, big}); },
                                      {"zeros", "(4294967296,4294967296)", "overflows"});
  expect_error<std::invalid_argument>([&] { jnp::ones({65536, 65536, 65536, 65536}); },
                                      {"ones", "(65536,65536,65536,65536)"});
  auto key = rnd::PRNGKey(0);
  expect_error<std::invalid_argument>([&] { rnd::uniform(key, {big, big}); },
                                      {"random.uniform", "(4294967296,4294967296)"});
  expect_error<std::invalid_argument>([&] { rnd::normal(key, {big, big}); }, {"random.normal"});
  expect_error<std::invalid_argument>([&] { rnd::bits(key, {big, big}); }, {"random.bits"});
  // 2^62 float32 elements count in int64, but their 2^64 bytes do not.
  expect_error<std::invalid_argument>([&] { jnp::zeros({int64_t{1} << 62}); },
                                      {"zeros", "(4611686018427387904,)", "4611686018427387904 x 4"});
  // A zero dimension makes the array empty whatever the others are (NumPy agrees).
  CHECK(jnp::zeros({0, big, big}).size() == 0);
}

TEST_CASE("#1 an allocation beyond memory and swap is refused before anything is allocated") {
  // 2^40 float32 = 4 TiB: no test machine has that much, so the check refuses it up front.
  size_t limit = memory_limit_bytes();
  REQUIRE(limit < (size_t{4} << 40));
  std::string msg = expect_error<AllocationError>(
      [] { jnp::zeros({int64_t{1} << 20, int64_t{1} << 20}); },
      {"zeros", "(1048576,1048576)", "float32", "4398046511104 bytes", "4096.0 GiB",
       "more than this machine's memory and swap"});
  // Code that handles memory exhaustion keeps catching it.
  CHECK_THROWS_AS(jnp::ones({int64_t{1} << 20, int64_t{1} << 20}), std::bad_alloc);
}

TEST_CASE("#6 reshape refuses negative dimensions other than a single -1") {
  Array x = jnp::ones({2, 3});
  expect_error<std::invalid_argument>([&] { jnp::reshape(x, {-2, -3}); },
                                      {"reshape", "negative dimension -2", "(-2,-3)"});
  expect_error<std::invalid_argument>([&] { jnp::reshape(x, {-1, -6}); },
                                      {"reshape", "negative dimension -6"});
  expect_error<std::invalid_argument>([&] { jnp::reshape(x, {-1, -1}); },
                                      {"one unknown dimension"});
  CHECK(jnp::reshape(x, {-1}).shape() == Shape{6});
  CHECK(jnp::reshape(x, {3, -1}).shape() == Shape{3, 2});
  // Array::reshaped, under jnp::reshape, refuses them too.
  expect_error<std::invalid_argument>([&] { x.reshaped({-2, -3}); }, {"negative dimension"});
  // broadcast_to's target shape is checked the same way.
  expect_error<std::invalid_argument>([&] { jnp::broadcast_to(jnp::ones({1}), {-3}); },
                                      {"broadcast_to", "negative dimension -3"});
}

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(FLAXPP_BINARY_DIR) / "test_tmp" / "hardening" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Every leaf kind: each dtype as a scalar, as values JSON shows ambiguously (uint32 below 2^31,
// integral floats, -0.0) and unambiguously, and with no elements in three shapes.
Tree every_leaf_kind() {
  Tree t;
  const std::pair<const char*, DType> dtypes[] = {{"f32", DType::float32},
                                                  {"i32", DType::int32},
                                                  {"u32", DType::uint32},
                                                  {"b", DType::bool_}};
  for (auto [name, dt] : dtypes) {
    std::string n = name;
    t = t.set(n + "/empty0", Tree(Array::empty({0}, dt)));
    t = t.set(n + "/empty20", Tree(Array::empty({2, 0}, dt)));
    t = t.set(n + "/empty03", Tree(Array::empty({0, 3}, dt)));
  }
  t = t.set("f32/scalar", Tree(Array(2.f)));
  t = t.set("f32/integral", Tree(Array::from({3}, std::vector<float>{1.f, -0.f, 3.f})));
  t = t.set("f32/nonfinite", Tree(Array::from({2}, std::vector<float>{INFINITY, -INFINITY})));
  t = t.set("i32/scalar", Tree(Array(int32_t{-7})));
  t = t.set("i32/range", Tree(Array::from({2}, std::vector<int32_t>{INT32_MIN, INT32_MAX})));
  t = t.set("u32/scalar", Tree(Array::from({}, std::vector<uint32_t>{5u})));
  t = t.set("u32/small", Tree(Array::from({2, 2}, std::vector<uint32_t>{0u, 1u, 2u, 3u})));
  t = t.set("u32/large", Tree(Array::from({2}, std::vector<uint32_t>{1u, 4294967295u})));
  t = t.set("b/scalar", Tree(Array(true)));
  t = t.set("b/values", Tree(Array::from_bool({3}, {true, false, true})));
  t = t.set("rng", Tree(rnd::key_data(rnd::PRNGKey(10))));  // case 2's leaf: uint32 (2,)
  return t;
}

// Same structure, and every leaf the same shape, dtype and bytes.
void require_exact(const Tree& got, const Tree& want, const std::string& how) {
  auto g = flatten_dict(got), w = flatten_dict(want);
  REQUIRE_MESSAGE(g.size() == w.size(), how);
  for (size_t i = 0; i < g.size(); ++i) {
    INFO(how << ": " << w[i].first);
    CHECK(g[i].first == w[i].first);
    CHECK(g[i].second.dtype() == w[i].second.dtype());
    CHECK(g[i].second.shape() == w[i].second.shape());
    CHECK(g[i].second.nbytes() == w[i].second.nbytes());
    if (g[i].second.nbytes() == w[i].second.nbytes() && w[i].second.nbytes())
      CHECK(std::memcmp(g[i].second.raw(), w[i].second.raw(), w[i].second.nbytes()) == 0);
  }
}

}  // namespace

TEST_CASE("#2 every leaf kind survives every format pair exactly, with and without a target") {
  fs::path d = fresh_dir("formats");
  const Tree want = every_leaf_kind();
  const char* exts[] = {".msgpack", ".json"};
  for (const char* a : exts)
    for (const char* b : exts)
      for (bool with_target : {false, true}) {
        std::string how = std::string(a) + " -> " + b + (with_target ? " (target)" : "");
        // save as a, load, save as b (what `flaxpp convert` does), load b.
        fs::path pa = d / (std::string("a") + a), pb = d / (std::string("b") + b);
        save(pa, want);
        Tree mid = with_target ? load(pa, want) : load(pa);
        require_exact(mid, want, how + ", first load");
        save(pb, mid);
        require_exact(with_target ? load(pb, want) : load(pb), want, how);
      }
  // The msgpack bytes themselves come back unchanged through JSON.
  save(d / "x.msgpack", want);
  save(d / "x.json", load(d / "x.msgpack"));
  save(d / "y.msgpack", load(d / "x.json"));
  std::ifstream x(d / "x.msgpack", std::ios::binary), y(d / "y.msgpack", std::ios::binary);
  std::stringstream xs, ys;
  xs << x.rdbuf();
  ys << y.rdbuf();
  CHECK(xs.str() == ys.str());
}

TEST_CASE("#2 the JSON file stays what Python writes; a stale or foreign sidecar is refused") {
  fs::path d = fresh_dir("sidecar");
  Tree rng{{"rng", Tree(rnd::key_data(rnd::PRNGKey(10)))}};  // [0, 10]: fits int32
  save(d / "r.json", rng);
  std::ifstream f(d / "r.json");
  std::string text((std::istreambuf_iterator<char>(f)), {});
  CHECK(text == "{\"rng\": [0, 10]}");  // json.dumps of the same dict
  std::ifstream m(d / "r.json.meta");
  std::string meta((std::istreambuf_iterator<char>(m)), {});
  CHECK(meta == "{\"flaxpp_meta\":1,\"bytes\":16,\"dtypes\":{\"rng\":\"uint32(2,)\"}}\n");
  // A float-only tree needs no sidecar, and saving one over the file removes the old sidecar.
  save(d / "r.json", Tree{{"w", Tree(Array(1.f))}});
  CHECK(!fs::exists(d / "r.json.meta"));
  // A sidecar that does not belong to the file is an error naming both.
  save(d / "s.json", rng);
  std::ofstream(d / "s.json", std::ios::trunc) << "{\"rng\": [0, 11]}";  // 16 bytes too
  CHECK(load(d / "s.json")["rng"].array().dtype() == DType::uint32);
  std::ofstream(d / "s.json", std::ios::trunc) << "{\"rng\": [0, 1234]}";
  expect_error<SerializationError>([&] { load(d / "s.json"); },
                                   {(d / "s.json").string(), "18 bytes", "sidecar says 16"});
  std::ofstream(d / "s.json.meta", std::ios::trunc) << "not json";
  expect_error<SerializationError>([&] { load(d / "s.json"); },
                                   {(d / "s.json.meta").string(), "is not JSON"});
}
