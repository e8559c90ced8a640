#include "core/format.hpp"

#include <cstdio>

namespace flaxpp::format {

namespace {
// "1234567" -> "1,234,567" (a run of digits, no sign).
std::string group_thousands(const std::string& digits) {
  std::string r;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) r += ',';
    r += digits[i];
  }
  return r;
}
}  // namespace

std::string with_commas(int64_t n) {
  // Through uint64_t so that INT64_MIN has a magnitude.
  uint64_t magnitude = n < 0 ? 0 - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
  return (n < 0 ? "-" : "") + group_thousands(std::to_string(magnitude));
}

std::string bytes_repr(int64_t bytes) {
  auto one_decimal = [](double v, const char* unit) {
    char b[64];
    std::snprintf(b, sizeof b, "%.1f", v);
    std::string s = b;
    size_t dot = s.find('.');
    return group_thousands(s.substr(0, dot)) + s.substr(dot) + " " + unit;
  };
  if (bytes > 1000000000) return one_decimal(bytes / 1e9, "GB");
  if (bytes > 1000000) return one_decimal(bytes / 1e6, "MB");
  if (bytes > 1000) return one_decimal(bytes / 1e3, "KB");
  return with_commas(bytes) + " B";
}

}  // namespace flaxpp::format
