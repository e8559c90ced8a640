// doctest's main, shared by every tests/<area>/<file>_test.cpp binary.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
