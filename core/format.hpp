// Number formatting shared by the library, the CLI and the examples, as Python/Flax print.
//
//   format::with_commas(31013408)   // "31,013,408"  (Python's f"{n:,}"; "-1,234" for negatives)
//   format::bytes_repr(124053632)   // "124.1 MB"    (Flax summary's _bytes_repr)
#pragma once

#include <cstdint>
#include <string>

namespace flaxpp::format {

// Python's f"{n:,}": digits grouped by three with ',' (the sign stays in front).
std::string with_commas(int64_t n);
// Flax's _bytes_repr: decimal units with strict thresholds (1000 bytes is "1,000 B", 1001 is
// "1.0 KB") and ',' separators in the integral part (f"{v:,.1f}": 999,999 bytes is "1,000.0 KB").
std::string bytes_repr(int64_t bytes);

}  // namespace flaxpp::format
