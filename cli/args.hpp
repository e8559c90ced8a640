// Strict argument parsing shared by the `flaxpp` commands (CLI11 parses the command lines; these
// read the values CLI11 hands over as text, such as lists).
//
//   parse_int("--shape", "2.5", 0, INT64_MAX)  // ArgError "--shape: '2.5' is not an integer"
//   parse_shape("--shape", "(3, 4)")              // Shape{3, 4}; "" and "()" are a scalar
//   refuse_same_file("--out", out, "--params", params)   // output must not overwrite an input
//
// Every error is an ArgError whose message starts with the argument at fault.
#pragma once

#include <charconv>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/shape.hpp"

namespace flaxpp::cli {

// A bad command-line value; what() names the argument first ("--shape: ...").
class ArgError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// "3,4", "(3, 4)", "[3,4]" -> {"3", "4"}; brackets and blanks around items are dropped.
inline std::vector<std::string> split_list(std::string s) {
  for (char& c : s)
    if (c == '(' || c == ')' || c == '[' || c == ']') c = ' ';
  std::vector<std::string> parts;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    parts.push_back(b == std::string::npos ? "" : item.substr(b, e - b + 1));
  }
  if (parts.size() == 1 && parts[0].empty()) parts.clear();  // "" or "()": no items
  return parts;
}

// A whole decimal integer in [lo, hi]: no sign tricks, fractions, exponents or trailing text.
inline int64_t parse_int(const std::string& arg, const std::string& text, int64_t lo, int64_t hi,
                         const char* range_name = nullptr) {
  int64_t v = 0;
  const char *b = text.data(), *e = text.data() + text.size();
  auto [p, ec] = std::from_chars(b, e, v);
  if (text.empty() || (ec != std::errc() && ec != std::errc::result_out_of_range) || p != e)
    throw ArgError(arg + ": '" + text + "' is not an integer");
  if (ec == std::errc::result_out_of_range || v < lo || v > hi)
    throw ArgError(arg + ": '" + text + "' is out of range" +
                   (range_name ? std::string(" for ") + range_name : std::string()) + " (" +
                   std::to_string(lo) + " to " + std::to_string(hi) + ")");
  return v;
}

inline uint32_t parse_uint32(const std::string& arg, const std::string& text) {
  return static_cast<uint32_t>(
      parse_int(arg, text, 0, std::numeric_limits<uint32_t>::max(), "uint32"));
}

// A shape: comma-separated dimensions >= 0, at most 8, whose size does not overflow.
inline Shape parse_shape(const std::string& arg, const std::string& text) {
  Shape shape;
  auto dims = split_list(text);
  if (dims.size() > Shape::kMaxRank)
    throw ArgError(arg + ": '" + text + "' has " + std::to_string(dims.size()) +
                   " dimensions, flaxpp's maximum is 8");
  for (const auto& d : dims) {
    if (d.empty()) throw ArgError(arg + ": '" + text + "' has an empty dimension");
    shape.push_back(parse_int(arg, d, 0, std::numeric_limits<int64_t>::max()));
  }
  try {
    checked_numel(shape, arg.c_str());
  } catch (const std::invalid_argument& e) {
    throw ArgError(e.what());
  }
  return shape;
}

// Refuses an output path that names the same file as an input (also through links or "./").
inline void refuse_same_file(const std::string& out_arg, const std::string& out,
                             const std::string& in_arg, const std::string& in) {
  namespace fs = std::filesystem;
  std::error_code ec;
  bool same = fs::exists(out, ec) ? fs::equivalent(out, in, ec)
                                  : fs::weakly_canonical(out, ec) == fs::weakly_canonical(in, ec);
  if (same)
    throw ArgError(out_arg + ": '" + out + "' is the " + in_arg + " file '" + in +
                   "'; writing it would destroy the input (choose another output path)");
}

}  // namespace flaxpp::cli
