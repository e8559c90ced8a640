// What the example tests (tests/examples/*_test.cpp) share: the built example binaries, scratch
// directories under the build tree, and running a shell command with its output captured.
// FLAXPP_BINARY_DIR is the build directory (a compile definition of the test targets).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <doctest/doctest.h>
#include <sys/wait.h>

namespace flaxpp::test {

namespace fs = std::filesystem;

inline const fs::path kExampleBin = fs::path(FLAXPP_BINARY_DIR) / "bin";

// An empty directory <build>/test_tmp/<group>/<name> (removed first if it exists).
inline fs::path fresh_dir(const std::string& group, const std::string& name) {
  fs::path d = fs::path(FLAXPP_BINARY_DIR) / "test_tmp" / group / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The path of a built example; fails the test, saying how to build it, when it is missing.
inline fs::path example(const std::string& binary) {
  fs::path exe = kExampleBin / binary;
  REQUIRE_MESSAGE(fs::exists(exe),
                  exe.string() << " is missing: build the examples (cmake --build <build dir>)");
  return exe;
}

struct RunResult {
  int exit_code;
  std::string output;  // stdout and stderr
};

// Runs `cmd` in a shell with stdout and stderr in `log`; the exit code and what it wrote.
inline RunResult shell(const std::string& cmd, const fs::path& log) {
  int status = std::system((cmd + " > '" + log.string() + "' 2>&1").c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(log)};
}

}  // namespace flaxpp::test
