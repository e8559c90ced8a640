// libFuzzer target: the `flaxpp` argument parsing. The input is a command line, one argument
// per line: CLI11 parses it with the option kinds the commands declare (integers, uint32,
// floats, strings, flags, subcommands), then cli/args.hpp reads --shape and --key-data the way
// `flaxpp random` does. Contract: a bad command line is a CLI::ParseError or a cli::ArgError
// (naming the argument first); anything else, or a value that does not read back, is a crash.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/args.hpp"
#include "core/shape.hpp"

namespace {

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "fuzz check failed: %s\n", why.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args;
  std::string cur;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\n') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += static_cast<char>(data[i]);
    }
  }
  args.push_back(cur);
  if (args.size() > 64) return 0;

  CLI::App app{"fuzz", "flaxpp random"};
  app.fallthrough();
  int64_t seed = 0, num = 2, n = 0;
  uint32_t fold = 0;
  float minval = 0, maxval = 1;
  bool flag = false;
  std::string key_text, shape_text, mode = "partitionable";
  auto* seed_opt = app.add_option("--seed", seed);
  app.add_option("--key-data", key_text)->excludes(seed_opt);
  app.add_option("--shape", shape_text);
  app.add_option("--mode", mode)->check(CLI::IsMember({"partitionable", "legacy"}));
  auto* split = app.add_subcommand("split");
  split->add_option("--num", num)->check(CLI::NonNegativeNumber);
  auto* fold_in = app.add_subcommand("fold_in");
  fold_in->add_option("--data", fold);
  auto* uniform = app.add_subcommand("uniform");
  uniform->add_option("--minval", minval);
  uniform->add_option("--maxval", maxval);
  uniform->add_flag("--flag,!--no-flag", flag);
  app.add_subcommand("permutation")->add_option("--n", n)->check(CLI::NonNegativeNumber);

  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 pops from the back
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError&) {
    return 0;
  }
  try {
    flaxpp::Shape shape = flaxpp::cli::parse_shape("--shape", shape_text);
    int64_t count = flaxpp::checked_numel(shape, "fuzz");  // parse_shape promised it fits
    if (count < 0) die("negative element count");
    for (int64_t d : shape)
      if (d < 0) die("negative dimension accepted from '" + shape_text + "'");
  } catch (const flaxpp::cli::ArgError& e) {
    if (std::string(e.what()).rfind("--shape", 0) != 0) die("error without the argument");
  }
  if (!key_text.empty()) {
    try {
      auto words = flaxpp::cli::split_list(key_text);
      for (const auto& w : words) {
        uint32_t v = flaxpp::cli::parse_uint32("--key-data", w);
        // An accepted word reads back: its digits, without leading zeros, are the value's
        // ("-0" and "-000" are 0, as from_chars and Python's int() read them).
        std::string u = !w.empty() && w[0] == '-' ? w.substr(1) : w;
        if (u.size() != w.size() && v != 0) die("'" + w + "' read as " + std::to_string(v));
        size_t first = u.find_first_not_of('0');
        std::string digits = first == std::string::npos ? "0" : u.substr(first);
        if (digits != std::to_string(v)) die("'" + w + "' read as " + std::to_string(v));
      }
    } catch (const flaxpp::cli::ArgError& e) {
      if (std::string(e.what()).rfind("--key-data", 0) != 0) die("error without the argument");
    }
  }
  try {
    int64_t v = flaxpp::cli::parse_int("--n", shape_text, -5, 5);
    if (v < -5 || v > 5) die("parse_int out of its range");
  } catch (const flaxpp::cli::ArgError&) {
  }
  return 0;
}
