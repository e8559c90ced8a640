// vmap: in_axes/out_axes, nesting, composition with grad and jvp, errors, no per-example loop.
// (The per-primitive column, vmap == a loop over examples, is in grad_check_test.cpp.)
#include "core/vmap.hpp"

#include <cmath>
#include <vector>

#include <doctest/doctest.h>

#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "core/tree.hpp"

using namespace flaxpp;

namespace {
Array rows(std::initializer_list<std::initializer_list<float>> r) { return Array::matrix(r); }
}  // namespace

TEST_CASE("vmap maps axis 0 of every argument; in_axes none shares an argument") {
  Array xs = rows({{1, 2, 3}, {4, 5, 6}});
  Array w = Array::vector({1.f, 10.f, 100.f});
  auto f = [](const Array& x, const Array& v) { return jnp::sum(x * v); };
  Array y = vmap(f, {0, none})(xs, w);
  CHECK(y.shape() == Shape{2});
  CHECK(y.to_float() == std::vector<float>{321.f, 654.f});
  // Both mapped: row i with row i.
  Array ws = rows({{1, 0, 0}, {0, 0, 1}});
  CHECK(vmap(f)(xs, ws).to_float() == std::vector<float>{1.f, 6.f});
  // Inside f, a mapped argument has the per-example shape.
  Shape seen;
  vmap([&](const Array& x) {
    seen = x.shape();
    return x;
  })(xs);
  CHECK(seen == Shape{3});
}

TEST_CASE("vmap in_axes at the last axis and out_axes") {
  Array xs = rows({{1, 2, 3}, {4, 5, 6}});  // map axis 1: three examples of shape (2,)
  auto f = [](const Array& x) { return x * 2.f + 1.f; };
  Array y = vmap(f, {1})(xs);  // out axis 0: (3, 2)
  CHECK(y.shape() == Shape{3, 2});
  CHECK(y.to_float() == std::vector<float>{3, 9, 5, 11, 7, 13});
  Array z = vmap(f, {-1}, {1})(xs);  // back where it came from
  CHECK(z.to_float() == (xs * 2.f + 1.f).to_float());
  // An output that does not depend on the mapped argument is broadcast along the batch axis.
  Array c = vmap([](const Array&) { return Array::vector({7.f, 8.f}); })(xs);
  CHECK(c.shape() == Shape{2, 2});
  CHECK(c.to_float() == std::vector<float>{7, 8, 7, 8});
}

TEST_CASE("nested vmap: two batch axes, each primitive once per level") {
  // outer(x, y)[i, j] = x[i] * y[j]: vmap over x, inside it vmap over y.
  Array x = Array::vector({1.f, 2.f, 3.f}), y = Array::vector({10.f, 20.f});
  auto outer =
      vmap([&](const Array& xi) { return vmap([&](const Array& yj) { return xi * yj; })(y); });
  Array o = outer(x);
  CHECK(o.shape() == Shape{3, 2});
  CHECK(o.to_float() == std::vector<float>{10, 20, 20, 40, 30, 60});
  // Batched matrix-vector products, nested: (2, 3, 4, 5) @ (5,) per (i, j).
  Array a = random::normal(random::PRNGKey(0), {2, 3, 4, 5});
  Array v = random::normal(random::PRNGKey(1), {5});
  Array m = vmap(vmap([&](const Array& ai) { return jnp::matmul(ai, v); }))(a);
  Array ref = jnp::matmul(a, v);
  CHECK(m.shape() == ref.shape());
  for (size_t i = 0; i < 24; ++i)  // products of 5 terms, same order: float32-equal to 1e-6
    CHECK(m.to_float()[i] == doctest::Approx(ref.to_float()[i]).epsilon(1e-6));
}

TEST_CASE("vmap(grad(f)) gives per-example gradients equal to a loop of grad") {
  Array W = random::normal(random::PRNGKey(2), {4, 3});
  Array xs = random::normal(random::PRNGKey(3), {5, 4});
  Array ys = random::normal(random::PRNGKey(4), {5, 3});
  auto loss = [](const Array& w, const Array& x, const Array& y) {
    Array h = jnp::tanh(jnp::matmul(x, w));
    return jnp::sum(jnp::square(h - y));
  };
  Array per = vmap(grad(loss), {none, 0, 0})(W, xs, ys);
  REQUIRE(per.shape() == Shape{5, 4, 3});
  for (int64_t i = 0; i < 5; ++i) {
    Array g = grad(loss)(W, jnp::index(xs, i), jnp::index(ys, i));
    Array gi = jnp::index(per, i);
    for (size_t k = 0; k < 12; ++k)  // one tanh chain, products of 4 terms: 1e-5 relative
      CHECK(gi.to_float()[k] == doctest::Approx(g.to_float()[k]).epsilon(1e-5));
  }
  // The mean of the per-example gradients is the gradient of the mean loss.
  auto mean_loss = [&](const Array& w) { return jnp::mean(vmap(loss, {none, 0, 0})(w, xs, ys)); };
  Array g_mean = grad(mean_loss)(W);  // grad of a vmapped function
  Array avg = jnp::mean(per, {0});
  for (size_t k = 0; k < 12; ++k)
    CHECK(g_mean.to_float()[k] == doctest::Approx(avg.to_float()[k]).epsilon(1e-5));
}

TEST_CASE("vmap composes with jvp and with trees") {
  Array xs = rows({{0.5f, -1.f}, {2.f, 0.25f}});
  Array vs = rows({{1.f, 0.f}, {0.f, 1.f}});
  auto f = [](const Array& x) { return jnp::exp(x) * x; };  // f' = e^x (1 + x)
  Array t = vmap([&](const Array& x, const Array& v) { return jvp(f, x, v).second; })(xs, vs);
  std::vector<float> want{static_cast<float>(std::exp(0.5) * 1.5), 0.f, 0.f,
                          static_cast<float>(std::exp(0.25) * 1.25)};
  for (size_t k = 0; k < 4; ++k) CHECK(t.to_float()[k] == doctest::Approx(want[k]).epsilon(1e-6));

  Tree p{{"a", rows({{1, 2}, {3, 4}})}, {"b", Array::vector({5.f, 6.f})}};
  Tree s = vmap([](const Tree& q) {
    return Tree{{"s", jnp::sum(q.at("a").array()) + q.at("b").array()}};
  })(p);
  CHECK(s.at("s").array().to_float() == std::vector<float>{8.f, 13.f});
}

TEST_CASE("vmap errors: inconsistent sizes, bad axes, primitives without a batching rule") {
  Array a = jnp::zeros({2, 3}), b = jnp::zeros({4, 3});
  auto f = [](const Array& x, const Array& y) { return x + y; };
  CHECK_THROWS_WITH_AS(vmap(f)(a, b),
                       "vmap got inconsistent sizes for array axes to be mapped: axis 0 of size 2, "
                       "axis 0 of size 4",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(vmap(f, {none, none})(a, b),
                       "vmap must have at least one non-none value in in_axes",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(vmap([](const Array& x) { return x; })(Array(1.f)),
                       "vmap: cannot map axis 0 of a scalar (shape ())", std::invalid_argument);
  CHECK_THROWS_AS(vmap([](const Array& x) { return x; }, {2})(a), std::invalid_argument);
  // take has no batching rule yet: a clear error, never a per-example loop.
  Array idx = Array::from({1}, std::vector<int32_t>{0});
  auto g = [&](const Array& x) { return jnp::sum(jnp::take(x, idx)) * x; };
  CHECK_THROWS_WITH_AS(vmap(g)(a), "vmap: no batching rule for take yet", std::invalid_argument);
}
