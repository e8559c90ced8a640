// A project outside the flaxpp tree, built against the installed package.
#include <iostream>

#include <flaxpp/flaxpp.hpp>

int main() {
  using namespace flaxpp;
  Array x = Array::vector({1.f, 2.f, 3.f});
  Array g = grad([](const Array& v) { return jnp::sum(v * v); })(x);  // 2x
  bool ok = g.data<float>()[2] == 6.f;
  std::cout << (ok ? "downstream ok" : "downstream WRONG") << "\n";
  return ok ? 0 : 1;
}
