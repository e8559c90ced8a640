// Issue #21's numbered cases, one regression test each (the number in the test name):
// sizes that overflow, JSON round trips that changed dtypes, training directories two runs
// share, CLI output over its input, reshape's negative dimensions, errors that said too little.
// The CLI cases run the built binary (FLAXPP_BINARY_DIR/bin/flaxpp and bin/train_charlm).
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>

#include "core/ops.hpp"
#include "core/random.hpp"

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
