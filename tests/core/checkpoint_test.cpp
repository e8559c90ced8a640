// checkpoint: the same gradients bit for bit, intermediates not kept alive between the passes.
#include "core/checkpoint.hpp"

#include <memory>

#include <doctest/doctest.h>

#include "core/ops.hpp"
#include "core/random.hpp"

using namespace flaxpp;

TEST_CASE("checkpoint: identical gradients, first and second order") {
  Array w = random::normal(random::PRNGKey(0), {4, 4});
  Array x = random::normal(random::PRNGKey(1), {3, 4});
  auto block = [&](const Array& h) { return jnp::tanh(jnp::matmul(h, w)) * h; };
  auto plain = [&](const Array& v) { return jnp::sum(block(block(v))); };
  auto remat = [&](const Array& v) {
    auto b = checkpoint(block);
    return jnp::sum(b(b(v)));
  };
  CHECK(remat(x).item<float>() == plain(x).item<float>());
  CHECK(grad(remat)(x).to_float() == grad(plain)(x).to_float());
  auto [v1, g1] = value_and_grad(remat)(x);
  CHECK(v1.item<float>() == plain(x).item<float>());
  // Hessian-vector products through the recomputation (the rule's vjp is recorded).
  Array u = random::normal(random::PRNGKey(2), {3, 4});
  auto hvp = [&](auto fn) {
    return grad([&](const Array& v) { return jnp::vdot(grad(fn)(v), u); })(x);
  };
  auto a = hvp(remat).to_float(), b = hvp(plain).to_float();
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-6));
}

TEST_CASE("checkpoint keeps no intermediate of f alive until the backward pass") {
  Array x = Array::vector({0.5f, -1.f});
  std::weak_ptr<autodiff::Node> inner;
  auto f = [&](const Array& v) {
    Array t = jnp::tanh(v);
    inner = t.node();
    return t * v;
  };
  // Without checkpoint the tanh node lives until backward; with it, none is even recorded.
  Array g = grad([&](const Array& v) {
    Array y = checkpoint(f)(v);
    CHECK(inner.expired());
    return jnp::sum(y);
  })(x);
  Array want = grad([&](const Array& v) { return jnp::sum(f(v)); })(x);
  CHECK(g.to_float() == want.to_float());
}
