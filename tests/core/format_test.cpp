// core/format.hpp against Python's f"{n:,}" and Flax summary's _bytes_repr (flax/linen/summary.py:
// decimal units with strict thresholds, one decimal, ',' in the integral part). The expected
// strings are what those Python expressions print for the same numbers, worked out by hand here.
#include "core/format.hpp"

#include <cstdint>
#include <limits>

#include <doctest/doctest.h>

using flaxpp::format::bytes_repr;
using flaxpp::format::with_commas;

TEST_CASE("with_commas is Python's f\"{n:,}\", negatives included") {
  CHECK(with_commas(0) == "0");
  CHECK(with_commas(999) == "999");
  CHECK(with_commas(1000) == "1,000");
  CHECK(with_commas(31013408) == "31,013,408");
  CHECK(with_commas(-1) == "-1");
  CHECK(with_commas(-999) == "-999");  // no ",": the sign is not a digit
  CHECK(with_commas(-1000) == "-1,000");
  CHECK(with_commas(-123456) == "-123,456");
  CHECK(with_commas(std::numeric_limits<int64_t>::max()) == "9,223,372,036,854,775,807");
  CHECK(with_commas(std::numeric_limits<int64_t>::min()) == "-9,223,372,036,854,775,808");
}

TEST_CASE("bytes_repr is Flax's _bytes_repr: strict thresholds, one decimal, grouped") {
  CHECK(bytes_repr(0) == "0 B");
  CHECK(bytes_repr(512) == "512 B");
  CHECK(bytes_repr(1000) == "1,000 B");  // not > 1000: still bytes
  CHECK(bytes_repr(1001) == "1.0 KB");
  CHECK(bytes_repr(4936) == "4.9 KB");
  CHECK(bytes_repr(999999) == "1,000.0 KB");  // f"{999.999:,.1f}" rounds to 1,000.0
  CHECK(bytes_repr(1000000) == "1,000.0 KB");
  CHECK(bytes_repr(1000001) == "1.0 MB");
  CHECK(bytes_repr(124053632) == "124.1 MB");  // the README gMLP's float32 params
  CHECK(bytes_repr(1000000001) == "1.0 GB");
  CHECK(bytes_repr(1234567890123) == "1,234.6 GB");
}
