// Dense, Embed, LayerNorm, Dropout and Sequential against closed forms (ones-initialised layers,
// as Flax's tests/linen/linear_test.py does) and against central differences for their gradients.
// Known answers from Flax's docstrings, naming and error plumbing are in module_test.cpp.
#include <cmath>
#include <functional>
#include <numeric>

#include <doctest/doctest.h>

#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "nn/nn.hpp"

using namespace flaxpp;
namespace rnd = flaxpp::random;
namespace init = flaxpp::nn::initializers;

namespace {

void check_all(const Array& got, double want) {
  for (double v : got.to_double()) CHECK(v == want);
}

void check_close(const Array& got, const std::vector<double>& want, double atol) {
  REQUIRE(got.size() == static_cast<int64_t>(want.size()));
  auto g = got.to_double();
  for (size_t i = 0; i < want.size(); ++i)
    CHECK_MESSAGE(std::fabs(g[i] - want[i]) <= atol, "element ", i, ": ", g[i], " vs ", want[i]);
}

// An initializer that returns a fixed table (Flax's `embedding_init=lambda rng, shape, dtype: table`).
nn::Initializer constant_table(Array table) {
  return [table](rnd::Key, const Shape& shape, DType) {
    REQUIRE(table.shape() == shape);
    return table;
  };
}

}  // namespace

// ---- Dense ---------------------------------------------------------------------------------

TEST_CASE("Dense with ones kernel and bias: ones((1,3)) -> 4 everywhere (linear_test.test_dense)") {
  nn::Dense dense{.features = 4, .kernel_init = init::ones, .bias_init = init::ones};
  auto [y, vars] = dense.init_with_output(rnd::PRNGKey(0), jnp::ones({1, 3}));
  CHECK(y.shape() == Shape{1, 4});
  CHECK(y.dtype() == DType::float32);
  check_all(y, 4.0);
  CHECK(vars.at("params/kernel").array().shape() == Shape{3, 4});  // (in, out), as Flax
  CHECK(vars.at("params/bias").array().shape() == Shape{4});
  check_all(dense.apply(vars, jnp::ones({1, 3})), 4.0);
}

TEST_CASE(
    "Dense keeps leading axes (linear_test.test_dense_extra_batch_dims) and takes rank-1 input") {
  nn::Dense dense{.features = 2, .kernel_init = init::ones, .bias_init = init::ones};
  auto [y3, v3] = dense.init_with_output(rnd::PRNGKey(0), jnp::ones({2, 3, 4}));
  CHECK(y3.shape() == Shape{2, 3, 2});
  check_all(y3, 5.0);  // 4 inputs of 1 times 1, plus bias 1
  auto [y1, v1] = dense.init_with_output(rnd::PRNGKey(0), jnp::ones({4}));
  CHECK(y1.shape() == Shape{2});
  check_all(y1, 5.0);
}

TEST_CASE("Dense with use_bias = false has no bias param (linear_test.test_dense_no_bias)") {
  nn::Dense dense{.features = 4, .use_bias = false, .kernel_init = init::ones};
  auto [y, vars] = dense.init_with_output(rnd::PRNGKey(0), jnp::ones({1, 3}));
  check_all(y, 3.0);
  CHECK(vars.at("params").keys() == std::vector<std::string>{"kernel"});
  CHECK(param_count(vars) == 12);
}

TEST_CASE("Dense with a known kernel equals x @ K + b computed in double") {
  Array k = Array::matrix({{1, -2, 0.5f}, {0.25f, 3, -1}});
  Array b = Array::vector({0.1f, -0.2f, 0.3f});
  nn::Dense dense{.features = 3, .kernel_init = constant_table(k), .bias_init = constant_table(b)};
  Array x = Array::matrix({{1, 2}, {-3, 0.5f}});
  Array y = dense.apply(dense.init(rnd::PRNGKey(0), x), x);
  auto kd = k.to_double(), bd = b.to_double(), xd = x.to_double();
  std::vector<double> want;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      want.push_back(xd[i * 2] * kd[j] + xd[i * 2 + 1] * kd[3 + j] + bd[j]);
  check_close(y, want, 1e-6);  // exact products of short binary fractions; only b's rounding
}

// ---- Embed ---------------------------------------------------------------------------------

namespace {
// Flax's `embed.apply(params, q, method=embed.attend)`: the Embed's attend at the root scope.
struct EmbedAttend : nn::Module<EmbedAttend> {
  nn::Embed embed;
  Array operator()(nn::Scope& s, const Array& q) const { return embed.attend(s, q); }
};
}  // namespace

TEST_CASE("Embed lookups and attend with a known table (linear_test.test_embed)") {
  // table[i] = (i, i, i): Flax's dummy_embedding = broadcast_to(arange(4)[..., None], (4, 3)).
  std::vector<float> t;
  for (int i = 0; i < 4; ++i) t.insert(t.end(), 3, static_cast<float>(i));
  Array table = Array::from({4, 3}, t);
  nn::Embed embed{.num_embeddings = 4, .features = 3, .embedding_init = constant_table(table)};
  Array ids = Array::from({1, 4}, std::vector<int32_t>{0, 1, 2, 3});
  auto [y, vars] = embed.init_with_output(rnd::PRNGKey(0), ids);
  CHECK(y.shape() == Shape{1, 4, 3});
  CHECK(y.to_float() == table.to_float());
  // attend(ones(3)) = ones @ table.T = 3 * arange(4).
  Array z = EmbedAttend{.embed = embed}.apply(vars, jnp::ones({3}));
  CHECK(z.to_float() == std::vector<float>{0, 3, 6, 9});
}

TEST_CASE("Embed: any id shape, negative ids wrap, attend = q @ embedding.T") {
  // table[i][j] = 10 i + j, so a looked-up value names its row and column.
  std::vector<float> t;
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 2; ++j) t.push_back(static_cast<float>(10 * i + j));
  nn::Embed embed{
      .num_embeddings = 5, .features = 2, .embedding_init = constant_table(Array::from({5, 2}, t))};
  Array ids = Array::from({2, 2, 2}, std::vector<int32_t>{4, 0, 3, -1, -5, 2, 1, 1});
  auto vars = embed.init(rnd::PRNGKey(0), ids);
  Array y = embed.apply(vars, ids);
  CHECK(y.shape() == Shape{2, 2, 2, 2});
  const int rows[8] = {4, 0, 3, 4, 0, 2, 1, 1};
  for (int n = 0; n < 8; ++n)
    for (int j = 0; j < 2; ++j) CHECK(y.data<float>()[n * 2 + j] == 10.f * rows[n] + j);
  // attend: (2, 2) queries -> (2, 5) logits, logits[b][i] = q[b] . table[i].
  Array q = Array::matrix({{1, 0.5f}, {-2, 0.25f}});
  Array logits = EmbedAttend{.embed = embed}.apply(vars, q);
  CHECK(logits.shape() == Shape{2, 5});
  std::vector<double> want;
  for (auto [q0, q1] : {std::pair{1.0, 0.5}, std::pair{-2.0, 0.25}})
    for (int i = 0; i < 5; ++i) want.push_back(q0 * (10 * i) + q1 * (10 * i + 1));
  check_close(logits, want, 0);  // small integers and halves: exact in float32
}

TEST_CASE("tied embeddings: lookup and attend share one table") {
  struct Tied : nn::Module<Tied> {
    Array operator()(nn::Scope& s, const Array& ids) const {
      auto embed = s.child("embed", nn::Embed{.num_embeddings = 7, .features = 3});
      return embed.method(&nn::Embed::attend, embed(ids));
    }
  };
  Array ids = Array::from({2}, std::vector<int32_t>{1, 6});
  auto vars = Tied{}.init(rnd::PRNGKey(0), ids);
  CHECK(param_count(vars) == 21);
  CHECK(vars.at("params/embed").keys() == std::vector<std::string>{"embedding"});
  Array logits = Tied{}.apply(vars, ids);
  CHECK(logits.shape() == Shape{2, 7});
  // logits[0][1] = |table[1]|^2.
  auto tbl = vars.at("params/embed/embedding").array().to_double();
  double n2 = tbl[3] * tbl[3] + tbl[4] * tbl[4] + tbl[5] * tbl[5];
  CHECK(std::fabs(logits.to_double()[1] - n2) <= 1e-6 * (1 + n2));
}

// ---- LayerNorm -----------------------------------------------------------------------------

namespace {
// (x - mean) / sqrt(var + eps) over the last axis of rows of length d, in double.
std::vector<double> layer_norm_double(const std::vector<double>& x, size_t d, double eps,
                                      const std::vector<double>& scale,
                                      const std::vector<double>& bias) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / d; ++r) {
    double mean = 0, var = 0;
    for (size_t j = 0; j < d; ++j) mean += x[r * d + j] / d;
    for (size_t j = 0; j < d; ++j) var += (x[r * d + j] - mean) * (x[r * d + j] - mean) / d;
    for (size_t j = 0; j < d; ++j)
      y[r * d + j] = (x[r * d + j] - mean) / std::sqrt(var + eps) * (scale.empty() ? 1 : scale[j]) +
                     (bias.empty() ? 0 : bias[j]);
  }
  return y;
}
}  // namespace

TEST_CASE("LayerNorm of known vectors equals (x - mean) / sqrt(var + eps) in double") {
  // Inputs with mean O(1) and variance O(1..10): the float32 E[x^2] - E[x]^2 loses only a few
  // ulps of E[x^2], so 1e-5 absolute on outputs of magnitude <= 2 is ~20 ulps of headroom.
  Array x = Array::from({2, 5}, std::vector<float>{1, 2, 3, 4, 10, -0.5f, 0.25f, 2, -3, 1.5f});
  nn::LayerNorm ln;
  auto [y, vars] = ln.init_with_output(rnd::PRNGKey(0), x);
  CHECK(vars.at("params").keys() == std::vector<std::string>{"scale", "bias"});
  check_all(vars.at("params/scale").array(), 1.0);
  check_all(vars.at("params/bias").array(), 0.0);
  check_close(y, layer_norm_double(x.to_double(), 5, 1e-6, {}, {}), 1e-5);

  // scale and bias are applied per feature: y * scale + bias.
  Array scale = Array::vector({1, 2, -1, 0.5f, 3}), bias = Array::vector({0, 0.5f, -1, 2, 0.25f});
  nn::LayerNorm affine{.scale_init = constant_table(scale), .bias_init = constant_table(bias)};
  Array ya = affine.apply(affine.init(rnd::PRNGKey(0), x), x);
  check_close(ya, layer_norm_double(x.to_double(), 5, 1e-6, scale.to_double(), bias.to_double()),
              4e-5);

  // Rank 3: each (i, j) row is normalised on its own.
  Array x3 = jnp::reshape(jnp::concatenate({x, x * 3.f}, 0), {2, 2, 5});
  check_close(ln.apply(vars, x3), layer_norm_double(x3.to_double(), 5, 1e-6, {}, {}), 1e-5);
}

TEST_CASE("LayerNorm epsilon is 1e-6 by default and matters for tiny variances") {
  Array x = Array::vector({0.f, 1e-3f});  // var = 2.5e-7, so y = +-5e-4 / sqrt(2.5e-7 + eps)
  nn::LayerNorm ln;
  Array y = ln.apply(ln.init(rnd::PRNGKey(0), x), x);
  check_close(y, layer_norm_double(x.to_double(), 2, 1e-6, {}, {}), 1e-5);  // -+0.4472
  CHECK(std::fabs(y.to_double()[1] - 0.4472136) < 1e-4);
  nn::LayerNorm loose{.epsilon = 1e-2};
  check_close(loose.apply(loose.init(rnd::PRNGKey(0), x), x),
              layer_norm_double(x.to_double(), 2, 1e-2, {}, {}), 1e-6);
}

TEST_CASE("LayerNorm use_scale / use_bias flags drop the params") {
  Array x = Array::matrix({{1, 2, 4}});
  auto want = layer_norm_double(x.to_double(), 3, 1e-6, {}, {});
  for (auto [use_scale, use_bias] :
       {std::pair{false, true}, std::pair{true, false}, std::pair{false, false}}) {
    nn::LayerNorm ln{.use_bias = use_bias, .use_scale = use_scale, .bias_init = init::ones};
    auto [y, vars] = ln.init_with_output(rnd::PRNGKey(0), x);
    CHECK(vars.contains("params/scale") == use_scale);
    CHECK(vars.contains("params/bias") == use_bias);
    std::vector<double> w = want;
    if (use_bias)
      for (double& v : w) v += 1;  // bias_init = ones
    check_close(y, w, 1e-5);
  }
}

TEST_CASE(
    "LayerNorm variance: v2021 (flax 0.3.4) does not clip E[x^2] - E[x]^2 at 0, current does") {
  // A constant vector of a large value: float32 E[x^2] rounds below E[x]^2, so the one-pass
  // variance is negative (-1/16 here). Flax 0.3.4 takes rsqrt(var + eps) of it -> NaN; since
  // 0.3.6 the variance is clipped at 0, so x - mean = 0 gives 0.
  Array x = jnp::full({5}, 1000.1f);
  Array var = jnp::mean(x * x) - jnp::mean(x) * jnp::mean(x);
  REQUIRE(var.item<float>() < -1e-6f);  // the premise: the rounding really goes negative
  nn::LayerNorm ln;
  auto vars = ln.init(rnd::PRNGKey(0), x);
  Array current = ln.apply(vars, x), v2024 = ln.apply(vars, x, nn::Compat::v2024);
  Array v2021 = ln.apply(vars, x, nn::Compat::v2021);
  check_all(current, 0.0);
  check_all(v2024, 0.0);
  for (double v : v2021.to_double()) CHECK(std::isnan(v));
  // A well-conditioned input gives the same result in every profile.
  Array z = Array::vector({1, -2, 0.5f, 4});
  CHECK(ln.apply(vars, jnp::full({5}, 2.f)).to_float() ==
        ln.apply(vars, jnp::full({5}, 2.f), nn::Compat::v2021).to_float());
  auto vz = ln.init(rnd::PRNGKey(0), z);
  CHECK(ln.apply(vz, z).to_float() == ln.apply(vz, z, nn::Compat::v2021).to_float());
}

// ---- Dropout -------------------------------------------------------------------------------

namespace {
Array iota_plus_one(const Shape& shape) {  // 1, 2, 3, ...: no zeros, so dropped entries show
  std::vector<float> v(static_cast<size_t>(numel(shape)));
  std::iota(v.begin(), v.end(), 1.f);
  return Array::from(shape, v);
}
nn::Rngs dropout_rng(uint32_t seed) { return nn::Rngs{{"dropout", rnd::PRNGKey(seed)}}; }
}  // namespace

TEST_CASE("Dropout is the identity when deterministic or rate == 0, zeros when rate == 1") {
  Array x = iota_plus_one({3, 4});
  Tree none;
  CHECK(nn::Dropout{.rate = 0.5, .deterministic = true}.apply(none, x).to_float() == x.to_float());
  CHECK(nn::Dropout{.rate = 0.5}.apply(none, x, true).to_float() == x.to_float());
  // rate 0 needs no rng stream at all.
  CHECK(nn::Dropout{.rate = 0.0}.apply(none, x, false).to_float() == x.to_float());
  Array zeros = nn::Dropout{.rate = 1.0}.apply(none, x, false, dropout_rng(0));
  check_all(zeros, 0.0);
  CHECK(zeros.shape() == x.shape());
  // Dropout owns no variables.
  CHECK(nn::Dropout{.rate = 0.5}.init(rnd::PRNGKey(0), x, false, dropout_rng(1)).empty());
}

TEST_CASE(
    "Dropout keeps entries as exactly x / keep; the mask is bernoulli(make_rng('dropout'), keep)") {
  Array x = iota_plus_one({4, 8});
  for (double rate : {0.1, 0.5, 0.75}) {
    float keep = static_cast<float>(1.0 - rate);
    Array y = nn::Dropout{.rate = rate}.apply(Tree{}, x, false, dropout_rng(3));
    // The key is make_rng('dropout') in the Dropout's own scope: counter 1 at the root path.
    Array mask = rnd::bernoulli(nn::derive_key(nn::Compat::current, rnd::PRNGKey(3), {}, 1), keep,
                                x.shape());
    int kept = 0;
    for (int64_t i = 0; i < x.size(); ++i) {
      float xi = x.data<float>()[i], yi = y.data<float>()[i];
      if (mask.data<uint8_t>()[i]) {
        CHECK(yi == xi / keep);  // the same float32 division Flax does
        ++kept;
      } else {
        CHECK(yi == 0.f);
      }
    }
    CHECK(kept > 0);
    CHECK(kept < x.size());
  }
}

TEST_CASE("Dropout keeps a fraction ~ 1 - rate of a large input") {
  // n = 200,000 draws: the kept fraction has standard deviation sqrt(p (1 - p) / n) <= 1.2e-3,
  // so 0.006 is a 5-sigma band.
  Array x = jnp::ones({200, 1000});
  for (double rate : {0.1, 0.3, 0.5, 0.9}) {
    Array y = nn::Dropout{.rate = rate}.apply(Tree{}, x, false, dropout_rng(7));
    double kept =
        jnp::sum(jnp::not_equal(y, Array(0.f))).item<double>() / static_cast<double>(x.size());
    CHECK(std::fabs(kept - (1 - rate)) < 0.006);
  }
}

TEST_CASE("Dropout broadcast_dims share one mask entry along those axes") {
  Array x = iota_plus_one({3, 4, 50});
  auto dropped = [](const Array& y, int64_t i, int64_t j, int64_t k) {
    return y.data<float>()[(i * 4 + j) * 50 + k] == 0.f;
  };
  for (std::vector<int64_t> dims :
       {std::vector<int64_t>{0}, std::vector<int64_t>{-1}, std::vector<int64_t>{0, 1}}) {
    Array y =
        nn::Dropout{.rate = 0.5, .broadcast_dims = dims}.apply(Tree{}, x, false, dropout_rng(5));
    auto shared = [&](int64_t axis) {
      for (int64_t d : dims)
        if (d == axis || d + 3 == axis) return true;
      return false;
    };
    int mismatches = 0, drops = 0;
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 4; ++j)
        for (int64_t k = 0; k < 50; ++k) {
          // Compare with the entry at index 0 along each broadcast axis.
          int64_t i0 = shared(0) ? 0 : i, j0 = shared(1) ? 0 : j, k0 = shared(2) ? 0 : k;
          mismatches += dropped(y, i, j, k) != dropped(y, i0, j0, k0);
          drops += dropped(y, i, j, k);
        }
    CHECK(mismatches == 0);
    CHECK(drops > 0);
    CHECK(drops < 600);
  }
  // The mask is drawn with the broadcast axes set to 1: shape (1, 4, 50) for dims {0}.
  Array y = nn::Dropout{.rate = 0.5, .broadcast_dims = {0}}.apply(Tree{}, x, false, dropout_rng(5));
  Array mask =
      rnd::bernoulli(nn::derive_key(nn::Compat::current, rnd::PRNGKey(5), {}, 1), 0.5f, {1, 4, 50});
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t jk = 0; jk < 200; ++jk)
      CHECK((y.data<float>()[i * 200 + jk] != 0.f) == (mask.data<uint8_t>()[jk] != 0));
}

TEST_CASE("Dropout: same key gives the same mask, another key or another module a different one") {
  Array x = iota_plus_one({64});
  nn::Dropout drop{.rate = 0.5};
  Array a = drop.apply(Tree{}, x, false, dropout_rng(1));
  Array b = drop.apply(Tree{}, x, false, dropout_rng(1));
  Array c = drop.apply(Tree{}, x, false, dropout_rng(2));
  CHECK(a.to_float() == b.to_float());
  CHECK(a.to_float() != c.to_float());
  // Two Dropouts in one module: Dropout_0 and Dropout_1 fold in different paths.
  struct Two : nn::Module<Two> {
    std::vector<Array> operator()(nn::Scope& s, const Array& x) const {
      return {s(nn::Dropout{.rate = 0.5}, x, false), s(nn::Dropout{.rate = 0.5}, x, false)};
    }
  };
  auto two = Two{}.apply(Tree{}, x, dropout_rng(1));
  CHECK(two[0].to_float() != two[1].to_float());
  // One Dropout called twice in a call draws counters 1 and 2 of its scope: different masks.
  struct Twice : nn::Module<Twice> {
    std::vector<Array> operator()(nn::Scope& s, const Array& x) const {
      auto drop = s.child("drop", nn::Dropout{.rate = 0.5});
      return {drop(x, false), drop(x, false)};
    }
  };
  auto twice = Twice{}.apply(Tree{}, x, dropout_rng(1));
  CHECK(twice[0].to_float() != twice[1].to_float());
}

TEST_CASE("Dropout errors: deterministic set on both or neither, missing rng, bad rate") {
  Array x = jnp::ones({2});
  nn::Dropout fixed{.rate = 0.5, .deterministic = true};
  CHECK_THROWS_WITH_AS(fixed.apply(Tree{}, x, false),
                       "<root> (Dropout): deterministic is set both on the module and at the call",
                       nn::ModuleError);
  CHECK_THROWS_WITH_AS(nn::Dropout{.rate = 0.5}.apply(Tree{}, x),
                       "<root> (Dropout): deterministic must be set on the module or at the call",
                       nn::ModuleError);
  // Flax's merge_param raises even when rate == 0.
  CHECK_THROWS_AS(nn::Dropout{.rate = 0.0}.apply(Tree{}, x), nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      nn::Dropout{.rate = 0.5}.apply(Tree{}, x, false),
      "<root> (Dropout): needs the rng stream 'dropout', which was not provided (pass "
      "nn::Rngs{{\"dropout\", key}} to apply)",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(nn::Dropout{.rate = 1.5}.apply(Tree{}, x, false, dropout_rng(0)),
                       "<root> (Dropout): rate must be in [0, 1], got 1.500000", nn::ModuleError);
}

// ---- gradients against central differences -------------------------------------------------
//
// The layers compute in float32, so the difference quotient is taken on float32 losses but in
// double: the step is the difference of the float32 values actually passed, fl(p+h) - fl(p-h).
// Error budget, for the losses below (|L| <= ~10, a few dozen terms, O(1) curvature) and
// h = 1e-2: rounding in each loss is <= ~1e-6 |L|, i.e. <= ~1e-3 after dividing by 2h in the
// worst case (we observe <= 2.5e-4); truncation h^2/6 |L'''| <= ~2e-5. A tolerance of
// 5e-3 (1 + |g|) is therefore several times the worst case, while a wrong rule (a missing factor
// or term) is off by O(|g|) and fails it.

namespace {

constexpr double kStep = 1e-2;
constexpr double kTol = 5e-3;

Array with_element(const Array& a, int64_t i, float v) {
  Array c = a.copy();
  c.mutable_data<float>()[i] = v;
  return c;
}

// Adds N(0, 0.3^2) to every leaf so ones/zeros initialisations do not hide terms.
Tree jitter(const Tree& params, uint32_t seed) {
  auto leaves = leaves_of(params);
  for (size_t i = 0; i < leaves.size(); ++i)
    leaves[i] =
        leaves[i] + 0.3f * rnd::normal(rnd::fold_in(rnd::PRNGKey(seed), static_cast<uint32_t>(i)),
                                       leaves[i].shape());
  return rebuild_like(params, leaves);
}

// d/dp of loss along one float32 coordinate, in double.
double central_difference(const std::function<double(float)>& at, float p) {
  float hi = p + static_cast<float>(kStep), lo = p - static_cast<float>(kStep);
  return (at(hi) - at(lo)) / (static_cast<double>(hi) - static_cast<double>(lo));
}

using Loss = std::function<Array(const Tree&, const Array&)>;

double value(const Loss& loss, const Tree& params, const Array& x) {
  return loss(params, x).item<double>();
}

// grad(loss)(params, x) against central differences in every parameter coordinate.
void check_param_grads(const Loss& loss, const Tree& params, const Array& x) {
  Tree g = grad(loss)(params, x);
  CHECK(tree_structure(g) == tree_structure(params));
  auto leaves = leaves_of(params), gl = leaves_of(g);
  for (size_t k = 0; k < leaves.size(); ++k)
    for (int64_t i = 0; i < leaves[k].size(); ++i) {
      double fd = central_difference(
          [&](float v) {
            auto l = leaves;
            l[k] = with_element(leaves[k], i, v);
            return value(loss, rebuild_like(params, l), x);
          },
          leaves[k].data<float>()[i]);
      double ad = gl[k].data<float>()[i];
      CHECK_MESSAGE(std::fabs(ad - fd) <= kTol * (1 + std::fabs(fd)), "leaf ", k, " element ", i,
                    ": ", ad, " vs ", fd);
    }
}

// grad<1>(loss)(params, x) against central differences in every input coordinate.
void check_input_grads(const Loss& loss, const Tree& params, const Array& x) {
  Array g = grad<1>(loss)(params, x);
  REQUIRE(g.shape() == x.shape());
  for (int64_t i = 0; i < x.size(); ++i) {
    double fd = central_difference(
        [&](float v) { return value(loss, params, with_element(x, i, v)); }, x.data<float>()[i]);
    double ad = g.data<float>()[i];
    CHECK_MESSAGE(std::fabs(ad - fd) <= kTol * (1 + std::fabs(fd)), "x element ", i, ": ", ad,
                  " vs ", fd);
  }
}

// L = sum(w * y) + sum(y^2) / 2 with fixed pseudo-random weights w.
template <class M, class... Extra>
Loss loss_of(const M& model, const Shape& out_shape, const Extra&... extra) {
  Array w = rnd::normal(rnd::PRNGKey(99), out_shape);
  return [=](const Tree& params, const Array& x) {
    Array y = model.apply(Tree{{"params", params}}, x, extra...);
    return jnp::sum(w * y + 0.5f * y * y);
  };
}

}  // namespace

TEST_CASE("gradients: Dense w.r.t. kernel, bias and input") {
  nn::Dense dense{.features = 3};
  Array x = rnd::normal(rnd::PRNGKey(1), {2, 4});
  Tree params = jitter(dense.init(rnd::PRNGKey(0), x)["params"], 1);
  auto loss = loss_of(dense, {2, 3});
  check_param_grads(loss, params, x);
  check_input_grads(loss, params, x);
}

TEST_CASE("gradients: LayerNorm w.r.t. scale, bias and input") {
  nn::LayerNorm ln;
  Array x = rnd::normal(rnd::PRNGKey(2), {2, 5});
  Tree params = jitter(ln.init(rnd::PRNGKey(0), x)["params"], 2);
  auto loss = loss_of(ln, {2, 5});
  check_param_grads(loss, params, x);
  check_input_grads(loss, params, x);
}

TEST_CASE("gradients: Embed w.r.t. the table (repeated ids accumulate, unused rows get 0)") {
  nn::Embed embed{.num_embeddings = 5, .features = 3};
  Array ids = Array::from({2, 3}, std::vector<int32_t>{0, 2, 2, 4, -1, 0});  // -1 is row 4
  Tree params = embed.init(rnd::PRNGKey(0), ids)["params"];
  auto loss = loss_of(embed, {2, 3, 3});
  check_param_grads(loss, params, ids);
  Array g = grad(loss)(params, ids)["embedding"].array();
  for (int row : {1, 3})
    for (int j = 0; j < 3; ++j) CHECK(g.data<float>()[row * 3 + j] == 0.f);
}

TEST_CASE("gradients: Dense then Dropout with a fixed dropout key") {
  struct DenseDropout : nn::Module<DenseDropout> {
    Array operator()(nn::Scope& s, const Array& x) const {
      return s(nn::Dropout{.rate = 0.5}, s(nn::Dense{.features = 6}, x), false);
    }
  };
  DenseDropout model;
  Array x = rnd::normal(rnd::PRNGKey(3), {2, 3});
  Tree params = jitter(
      model.init(nn::Rngs{{"params", rnd::PRNGKey(0)}, {"dropout", rnd::PRNGKey(4)}}, x)["params"],
      3);
  auto loss = loss_of(model, {2, 6}, dropout_rng(4));
  check_param_grads(loss, params, x);
  check_input_grads(loss, params, x);
  // Dropout alone: dy/dx = mask / keep exactly.
  Array xd = iota_plus_one({10});
  Array gd = grad([](const Array& v) {
    return jnp::sum(nn::Dropout{.rate = 0.5}.apply(Tree{}, v, false, dropout_rng(8)));
  })(xd);
  Array y = nn::Dropout{.rate = 0.5}.apply(Tree{}, xd, false, dropout_rng(8));
  for (int64_t i = 0; i < 10; ++i)
    CHECK(gd.data<float>()[i] == (y.data<float>()[i] != 0.f ? 2.f : 0.f));
}

TEST_CASE(
    "gradients: Sequential [Dense, tanh, LayerNorm, Dense] w.r.t. the params tree and input") {
  nn::Sequential seq{
      .layers = {nn::Dense{.features = 4}, nn::tanh, nn::LayerNorm{}, nn::Dense{.features = 2}}};
  Array x = rnd::normal(rnd::PRNGKey(5), {3, 3});
  Tree params = jitter(seq.init(rnd::PRNGKey(0), x)["params"], 5);
  CHECK(params.keys() == std::vector<std::string>{"layers_0", "layers_2", "layers_3"});
  auto loss = loss_of(seq, {3, 2});
  check_param_grads(loss, params, x);
  check_input_grads(loss, params, x);
}
