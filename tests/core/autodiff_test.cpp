// grad / value_and_grad / vjp / jvp: closed forms, nesting, second derivatives, memory.
#include "core/autodiff.hpp"

#include <cmath>

#include <doctest/doctest.h>

#include "core/ops.hpp"
#include "core/ops_fused.hpp"
#include "core/primitive.hpp"
#include "core/random.hpp"
#include "core/tree.hpp"

using namespace flaxpp;

namespace {
float at(const Array& a, int64_t i) { return a.data<float>()[i]; }
}  // namespace

TEST_CASE("grad of a scalar polynomial matches its closed form") {
  auto f = [](const Array& x) { return x * x * x + 2.f * x; };  // f' = 3x^2 + 2
  for (float x : {-2.f, 0.f, 0.5f, 3.f})
    CHECK(grad(f)(Array(x)).item<float>() == doctest::Approx(3 * x * x + 2));
}

TEST_CASE("grad(grad(f)) and third derivatives of tanh") {
  auto f = [](const Array& x) { return jnp::tanh(x); };
  auto d1 = grad(f);
  auto d2 = grad([&](const Array& x) { return d1(x); });
  auto d3 = grad([&](const Array& x) { return d2(x); });
  for (double x : {-1.3, -0.2, 0.0, 0.7, 2.0}) {
    double t = std::tanh(x), s = 1 - t * t;
    CHECK(d1(Array(float(x))).item<double>() == doctest::Approx(s).epsilon(1e-5));
    CHECK(d2(Array(float(x))).item<double>() == doctest::Approx(-2 * t * s).epsilon(1e-5));
    CHECK(d3(Array(float(x))).item<double>() == doctest::Approx(s * (6 * t * t - 2)).epsilon(1e-4));
  }
}

TEST_CASE("nested grad does not confuse its variable with the outer one") {
  // d/dx [ x * (d/dy (x + y) at y = 1) ] = 1 for every x.
  auto inner = [](const Array& x) {
    return grad([&](const Array& y) { return x + y; })(Array(1.f));
  };
  auto outer = grad([&](const Array& x) { return x * inner(x); });
  for (float x : {-3.f, 0.f, 2.5f}) CHECK(outer(Array(x)).item<float>() == 1.f);
  // And a case where the inner derivative does depend on x: d/dx [x * d/dy (x*y)] = 2x.
  auto outer2 = grad(
      [](const Array& x) { return x * grad([&](const Array& y) { return x * y; })(Array(1.f)); });
  CHECK(outer2(Array(3.f)).item<float>() == 6.f);
}

TEST_CASE("value_and_grad with several arguments, has_aux, and broadcasting") {
  Array w = Array::matrix({{1, 2}, {3, 4}});
  Array b = Array::vector({0.5f, -1.f});
  Array x = Array::vector({1.f, 2.f});
  auto loss = [](const Array& w, const Array& b, const Array& x) {
    return jnp::sum(jnp::matmul(x, w) + b);  // sum_j (sum_i x_i w_ij + b_j)
  };
  auto [v, grads] = value_and_grad<0, 1>(loss)(w, b, x);
  auto [gw, gb] = grads;
  CHECK(v.item<float>() == doctest::Approx(1 + 6 + 2 + 8 - 0.5));
  CHECK(gw.shape() == Shape{2, 2});
  CHECK(at(gw, 0) == 1.f);
  CHECK(at(gw, 1) == 1.f);
  CHECK(at(gw, 2) == 2.f);
  CHECK(at(gw, 3) == 2.f);
  CHECK(at(gb, 0) == 1.f);
  CHECK(at(gb, 1) == 1.f);
  CHECK(!v.node());
  CHECK(!gw.node());

  auto with_aux = [](const Array& x) { return std::make_pair(jnp::sum(x * x), x * 2.f); };
  auto [v2, aux, g2] = value_and_grad(with_aux, has_aux)(x);
  CHECK(v2.item<float>() == 5.f);
  CHECK(at(aux, 1) == 4.f);
  CHECK(!aux.node());
  CHECK(at(g2, 1) == 4.f);
}

TEST_CASE("grad rejects non-scalar outputs and integer inputs with clear messages") {
  auto f = [](const Array& x) { return x * 2.f; };
  CHECK_THROWS_WITH_AS(
      grad(f)(Array::vector({1, 2})),
      "grad: the function must return a float32 scalar, got shape (2,) dtype float32",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      grad([](const Array& x) { return jnp::sum(jnp::astype(x, DType::float32)); })(Array(3)),
      "grad requires float32 inputs, got an array of dtype int32 and shape ()",
      std::invalid_argument);
}

TEST_CASE("vjp pullback and jvp agree with the Jacobian") {
  Array x = Array::vector({0.5f, -1.f, 2.f});
  auto f = [](const Array& x) { return jnp::exp(x) * 2.f; };  // J = diag(2 e^x)
  auto [y, pullback] = vjp(f, x);
  CHECK(at(y, 2) == doctest::Approx(2 * std::exp(2.0)));
  auto [dx] = pullback(Array::vector({1.f, 0.f, 3.f}));
  CHECK(at(dx, 0) == doctest::Approx(2 * std::exp(0.5)));
  CHECK(at(dx, 1) == 0.f);
  CHECK(at(dx, 2) == doctest::Approx(6 * std::exp(2.0)));
  auto [y2, tangent] = jvp(f, x, Array::vector({1.f, 1.f, 0.f}));
  CHECK(at(tangent, 0) == doctest::Approx(2 * std::exp(0.5)));
  CHECK(at(tangent, 1) == doctest::Approx(2 * std::exp(-1.0)));
  CHECK(at(tangent, 2) == 0.f);
  CHECK_THROWS_WITH_AS(pullback(Array::vector({1.f})),
                       "vjp pullback: cotangent shape (1,) differs from output shape (3,)",
                       std::invalid_argument);
}

// jvp is forward mode proper: closed forms for one and several arguments, trees, nesting.
TEST_CASE("jvp over several arguments takes tuples of primals and tangents") {
  // f(x, w) = sum(x * w) + exp(w): d = sum(dx * w + x * dw) + exp(w) dw.
  auto f = [](const Array& x, const Array& w) { return jnp::sum(x * w) + jnp::exp(jnp::sum(w)); };
  Array x = Array::vector({1.f, 2.f}), w = Array::vector({0.5f, -0.25f});
  Array dx = Array::vector({1.f, 0.f}), dw = Array::vector({0.f, 2.f});
  auto [y, ydot] = jvp(f, std::tuple{x, w}, std::tuple{dx, dw});
  double ew = std::exp(0.25);
  CHECK(y.item<double>() == doctest::Approx(0.5 - 0.5 + ew));
  CHECK(ydot.item<double>() == doctest::Approx(1 * 0.5 + 2 * 2 + ew * 2).epsilon(1e-6));
  CHECK(!ydot.node());  // a top-level jvp returns detached values

  // A parameter tree: tangent shaped like the tree.
  Tree p{{"a", Array::vector({1.f, 2.f})}, {"b", Array(3.f)}};
  Tree t{{"a", Array::vector({1.f, 1.f})}, {"b", Array(0.5f)}};
  auto g = [](const Tree& q) { return jnp::sum(q.at("a").array()) * q.at("b").array(); };
  auto [gy, gdot] = jvp(g, p, t);
  CHECK(gy.item<float>() == 9.f);
  CHECK(gdot.item<float>() == doctest::Approx(2 * 3 + 3 * 0.5));  // da sum * b + sum(a) db

  CHECK_THROWS_WITH_AS(jvp(f, std::tuple{x, w}, std::tuple{dx, Array::vector({1.f})}),
                       "jvp: tangent float32(1,) differs from primal float32(2,)",
                       std::invalid_argument);
}

TEST_CASE("jvp nests with grad both ways: forward-over-reverse and reverse-over-forward") {
  // f(x) = sum(x^3): grad = 3x^2, H = diag(6x). jvp(grad f)(x; v) = 6 x v, and
  // grad of x -> <jvp(f)(x; v), 1> = grad of sum(3 x^2 v) = 6 x v.
  auto f = [](const Array& x) { return jnp::sum(x * x * x); };
  Array x = Array::vector({1.f, -2.f, 0.5f}), v = Array::vector({1.f, 0.5f, -2.f});
  auto [g, hv] = jvp(grad(f), x, v);
  CHECK(g.to_float() == std::vector<float>{3.f, 12.f, 0.75f});
  CHECK(hv.to_float() == std::vector<float>{6.f, -6.f, -6.f});
  Array rv = grad([&](const Array& y) { return jvp(f, y, v).second; })(x);
  CHECK(rv.to_float() == std::vector<float>{6.f, -6.f, -6.f});
  // jvp of jvp: the second derivative along v twice, sum(6 x v v).
  auto [d1, d2] = jvp([&](const Array& y) { return jvp(f, y, v).second; }, x, v);
  CHECK(d1.item<float>() == doctest::Approx(3 * (1 * 1 + 4 * 0.5 + 0.25 * -2)));
  CHECK(d2.item<float>() == doctest::Approx(6 * (1 * 1 - 2 * 0.25 + 0.5 * 4)));
}

TEST_CASE("Hessian-vector product of a quadratic form") {
  // f(x) = 0.5 x^T A x with symmetric A: H v = A v.
  Array A = Array::matrix({{2, 1}, {1, 3}});
  Array v = Array::vector({1.f, -2.f});
  auto f = [&](const Array& x) { return 0.5f * jnp::sum(x * jnp::matmul(A, x)); };
  auto hvp = grad([&](const Array& x) { return jnp::vdot(grad(f)(x), v); });
  Array h = hvp(Array::vector({0.3f, 0.7f}));
  CHECK(at(h, 0) == doctest::Approx(0.f));
  CHECK(at(h, 1) == doctest::Approx(-5.f));
}

TEST_CASE("the graph is released when grad returns") {
  std::weak_ptr<autodiff::Node> probe;
  Array g = grad([&](const Array& x) {
    Array y = jnp::tanh(x) * x;
    probe = y.node();
    return jnp::sum(y);
  })(Array::vector({1.f, 2.f}));
  CHECK(probe.expired());
  CHECK(!g.node());
  CHECK(!autodiff::is_recording() == false);  // recording restored after the backward pass
}

TEST_CASE("stop_gradient blocks the gradient") {
  auto f = [](const Array& x) { return jnp::sum(x * jnp::stop_gradient(x)); };
  Array g = grad(f)(Array::vector({3.f}));
  CHECK(at(g, 0) == 3.f);
}

// grad / value_and_grad at the top level consume the graph: rules release their activations as
// they run, cotangents accumulate in place, and fused rules may overwrite a buffer nothing else
// holds. None of that may change a value, nor touch an array the caller can still see.
TEST_CASE(
    "consuming backward pass: same gradients as vjp's reusable pullback, caller's arrays intact") {
  Array w = random::normal(random::PRNGKey(1), {6, 9});
  Array labels = random::randint(random::PRNGKey(2), {6}, 0, 9);
  auto f = [&](const Array& p) {
    Array z = p * 2.f;  // held only by the cross-entropy rule after the forward pass
    Array h = fused::gelu_tanh(z) + z * z;  // z used three times: accumulated cotangents
    Array ln = fused::layer_norm(h, std::nullopt, std::nullopt, 1e-6f, true);
    return jnp::sum(fused::softmax_cross_entropy_with_integer_labels(ln + z, labels));
  };
  auto [v, g] = value_and_grad(f)(w);
  auto [out, pullback] = vjp(f, w);
  auto [g_ref] = pullback(Array(1.f));
  auto [g_again] = pullback(Array(1.f));  // a non-consuming pullback can run twice
  CHECK(v.item<float>() == out.item<float>());
  CHECK(g.to_float() == g_ref.to_float());
  CHECK(g_again.to_float() == g_ref.to_float());

  // Logits returned as aux share their buffer with the rule's copy: it must not be overwritten.
  auto with_aux = [&](const Array& p) {
    Array z = p * 2.f;
    return std::make_pair(jnp::sum(fused::softmax_cross_entropy_with_integer_labels(z, labels)), z);
  };
  auto [v2, aux, g2] = value_and_grad(with_aux, has_aux)(w);
  CHECK(aux.to_float() == (w * 2.f).to_float());
  // A traced input is the caller's array: never reused either.
  Array logits = w * 3.f;
  std::vector<float> before = logits.to_float();
  auto g3 = grad([&](const Array& z) {
    return jnp::sum(fused::softmax_cross_entropy_with_integer_labels(z, labels));
  })(logits);
  CHECK(logits.to_float() == before);
  CHECK(g3.shape() == logits.shape());
}
