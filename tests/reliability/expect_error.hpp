// The reliability suites' error check: an exception of a given type whose message holds pieces.
#pragma once

#include <initializer_list>
#include <string>

#include <doctest/doctest.h>

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
