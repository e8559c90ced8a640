// The module system against Flax's published known answers (flax-semantics.md §2.5, §7), naming
// rules, init/apply plumbing and error messages.
#include <algorithm>
#include <cmath>

#include <doctest/doctest.h>

#include "core/ops.hpp"
#include "core/random.hpp"
#include "nn/nn.hpp"

using namespace flaxpp;
namespace rnd = flaxpp::random;

namespace {

std::vector<std::array<uint32_t, 2>> g_keys;  // keys seen by the probe modules below

std::array<uint32_t, 2> pair(rnd::Key k) { return {k.k0, k.k1}; }

// Flax's rng_guide: RNGModule draws 3 keys, its RNGSubModule_k children 2 each, etc.
struct RNGSubSubModule : nn::Module<RNGSubSubModule> {
  Array operator()(nn::Scope& s) const {
    g_keys.push_back(pair(s.make_rng("params")));
    g_keys.push_back(pair(s.make_rng("params")));
    return Array(0.f);
  }
};
struct RNGSubModule : nn::Module<RNGSubModule> {
  bool nested = true;
  Array operator()(nn::Scope& s) const {
    g_keys.push_back(pair(s.make_rng("params")));
    if (nested) {
      g_keys.push_back(pair(s.make_rng("params")));
      s(RNGSubSubModule{});
    }
    return Array(0.f);
  }
};
struct RNGModule : nn::Module<RNGModule> {
  Array operator()(nn::Scope& s) const {
    for (int i = 0; i < 3; ++i) g_keys.push_back(pair(s.make_rng("params")));
    s(RNGSubModule{});
    s(RNGSubModule{.nested = false});
    return Array(0.f);
  }
};

void check_close(const Array& got, const std::vector<float>& want, double atol) {
  REQUIRE(got.size() == static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) CHECK(std::fabs(got.data<float>()[i] - want[i]) <= atol);
}

}  // namespace

TEST_CASE("rng_guide: make_rng keys per scope and counter (lazy scheme)") {
  // Source: google/flax docs/guides/flax_fundamentals/rng_guide.ipynb (keys printed as uint32 pairs).
  g_keys.clear();
  RNGModule{}.init(rnd::PRNGKey(0));
  std::vector<std::array<uint32_t, 2>> want = {
      {1428664606, 3351135085}, {3456700291, 3873160899}, {2411773124, 4124888837},  // root 1..3
      {3858825717, 2323087578}, {601859108, 3782857444},   // RNGSubModule_0
      {234240654, 1028548813},  {3650462303, 2124609379},  // .../RNGSubSubModule_0
      {426957352, 2006350344}};                            // RNGSubModule_1
  CHECK(g_keys == want);
}

TEST_CASE("root key derivation in both schemes (scope_test.test_rng, flax-semantics §2.5)") {
  struct Probe : nn::Module<Probe> {
    Array operator()(nn::Scope& s) const {
      g_keys.push_back(pair(s.make_rng("params")));
      return Array(0.f);
    }
  };
  g_keys.clear();
  Probe{}.init(rnd::PRNGKey(0), nn::Compat::v2021);
  Probe{}.init(rnd::PRNGKey(0), nn::Compat::current);
  // 2021: fold_in(PRNGKey(0), 1) (flax@v0.3.4 tests/core/scope_test.py); lazy: §2.5 table.
  CHECK(g_keys[0] == std::array<uint32_t, 2>{928981903, 3453687069});
  CHECK(g_keys[1] == std::array<uint32_t, 2>{1428664606, 3351135085});
  // A wrapped Dense_0's kernel key (§2.5): legacy fold_in(fold_in(K, H('Dense_0')), 1), lazy sha1.
  CHECK(pair(nn::derive_key(nn::Compat::v2021, rnd::PRNGKey(0), {"Dense_0"}, 1)) ==
        std::array<uint32_t, 2>{1262259896, 2857656763});
  CHECK(pair(nn::derive_key(nn::Compat::current, rnd::PRNGKey(0), {"Dense_0"}, 1)) ==
        std::array<uint32_t, 2>{3043437727, 3662875008});
  CHECK(nn::sha1_prefix32("Dense_0") == 0x2a1da067u);
  CHECK(nn::sha1_prefix32(std::string("\x01", 1)) == 0xbf8b4530u);
  // gmlp_flax's layer-0 proj_in kernel (§3.3).
  std::vector<std::string> p = {"layers_0", "layers_0", "layers_0", "proj_in"};
  CHECK(pair(nn::derive_key(nn::Compat::v2021, rnd::PRNGKey(0), p, 1)) ==
        std::array<uint32_t, 2>{1120645633, 1194164086});
  CHECK(pair(nn::derive_key(nn::Compat::current, rnd::PRNGKey(0), p, 1)) ==
        std::array<uint32_t, 2>{1041129777, 1704446013});
}

TEST_CASE("sha1 matches FIPS 180 test vectors") {
  auto hex = [](std::array<uint8_t, 20> d) {
    std::string s;
    char b[3];
    for (auto c : d) std::snprintf(b, 3, "%02x", c), s += b;
    return s;
  };
  CHECK(hex(nn::sha1("abc")) == "a9993e364706816aba3e25717850c26c9cd0d89d");
  CHECK(hex(nn::sha1("")) == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  CHECK(hex(nn::sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
}

// ---- Flax's own examples with printed values -----------------------------------------------

namespace {
struct DropoutMLP : nn::Module<DropoutMLP> {  // flax/linen/stochastic.py Dropout docstring
  Array operator()(nn::Scope& s, const Array& x, bool train) const {
    Array y = s(nn::Dense{.features = 4}, x);
    return s(nn::Dropout{.rate = 0.5, .deterministic = !train}, y);
  }
};
struct ExplicitMLP : nn::Module<ExplicitMLP> {  // flax@v0.3.4 docs/notebooks/flax_basics.ipynb
  std::vector<int64_t> features;
  Array operator()(nn::Scope& s, const Array& inputs) const {
    Array x = inputs;
    for (size_t i = 0; i < features.size(); ++i) {
      x = s.call("layers", i, nn::Dense{.features = features[i]}, x);
      if (i + 1 != features.size()) x = nn::relu(x);
    }
    return x;
  }
};
struct SimpleDense : nn::Module<SimpleDense> {  // same notebook: a module with its own params
  int64_t features = 0;
  nn::Initializer kernel_init = nn::initializers::lecun_normal();
  nn::Initializer bias_init = nn::initializers::zeros;
  Array operator()(nn::Scope& s, const Array& x) const {
    Array kernel = s.param("kernel", kernel_init, {x.shape().back(), features});
    Array y = jnp::matmul(x, kernel);
    return y + s.param("bias", bias_init, {features});
  }
};
}  // namespace

TEST_CASE("Embed(5, 3).init(key(0)): docstring values in both bit modes") {
  // flax/linen/linear.py Embed docstring: @v0.8.0 (JAX < 0.5, legacy bits) and @v0.12.7 (JAX >= 0.5).
  // Tolerance 1e-6: the docstring prints float32 to 8 significant digits.
  Array ids = Array::from({2, 3}, std::vector<int32_t>{0, 1, 2, -1, -2, -3});
  nn::Embed layer{.num_embeddings = 5, .features = 3};
  auto v24 = layer.init(rnd::PRNGKey(0), ids, nn::Compat::v2024);
  check_close(v24.at("params/embedding").array(),
              {-0.28884724f, 0.19018005f, -0.414205f, -0.11768015f, -0.54618824f, -0.3789283f,
               0.30428642f, 0.49511626f, 0.01706631f, -0.0982546f, -0.43055868f, 0.20654906f,
               -0.688412f, -0.46882293f, 0.26723292f},
              1e-6);
  auto vars = layer.init(rnd::PRNGKey(0), ids);
  Array table = vars.at("params/embedding").array();
  check_close(table,
              {0.04396089f, -0.9328513f, -0.97328115f, 0.41147125f, 0.66334754f, 0.49469155f,
               0.09719624f, 0.49861377f, 0.49519277f, -0.13316602f, 0.6697022f, 0.3710195f,
               -0.5039532f, 0.287319f, 1.4369922f},
              1e-6);
  // apply with [[0,1,2],[-1,-2,-3]] returns rows 0,1,2 and 4,3,2: negative ids wrap.
  Array out = layer.apply(vars, ids);
  CHECK(out.shape() == Shape{2, 3, 3});
  const int rows[6] = {0, 1, 2, 4, 3, 2};
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 3; ++j)
      CHECK(out.data<float>()[i * 3 + j] == table.data<float>()[rows[i] * 3 + j]);
}

TEST_CASE("Dropout docstring: Dense(4) then Dropout(0.5), both bit modes") {
  // flax/linen/stochastic.py Dropout docstring at @v0.8.0 (v2024 profile) and @v0.12.7 (current).
  Array x = jnp::ones({1, 3});
  DropoutMLP model;
  for (auto [compat, plain, dropped] :
       {std::tuple{nn::Compat::v2024,
                   std::vector<float>{-0.88686204f, -0.5928178f, -0.5184689f, -0.4345976f},
                   std::vector<float>{0.f, -1.1856356f, -1.0369378f, 0.f}},
        std::tuple{nn::Compat::current,
                   std::vector<float>{-0.17875527f, 1.6255447f, -1.2431065f, -0.02554005f},
                   std::vector<float>{-0.35751054f, 3.2510893f, 0.f, 0.f}}}) {
    auto vars = model.init(rnd::PRNGKey(0), x, false, compat);
    check_close(model.apply(vars, x, false, compat), plain, 1e-6);
    check_close(model.apply(vars, x, true, nn::Rngs{{"dropout", rnd::PRNGKey(1)}}, compat), dropped,
                2e-6);
  }
}

TEST_CASE("flax 0.3.4 flax_basics notebook: SimpleDense, Dense(5), ExplicitMLP (2021 profile)") {
  // key1, key2 = split(PRNGKey(0)) with legacy bits; values printed in the notebook. The
  // reference reproduces them to about 2e-6 (old XLA:CPU fast-math), so we allow 5e-6.
  rnd::ScopedBitsMode legacy(rnd::BitsMode::legacy);
  auto keys = rnd::split(rnd::PRNGKey(0));
  rnd::Key key1 = keys[0], key2 = keys[1];

  auto sd = SimpleDense{.features = 3}.init(key2, rnd::uniform(key1, {4, 4}), nn::Compat::v2021);
  check_close(sd.at("params/kernel").array(),
              {0.6503669f, 0.8678979f, 0.46042678f, 0.05673932f, 0.9909285f, -0.63536596f,
               0.76134115f, -0.3250529f, -0.6522163f, -0.8243032f, 0.4150194f, 0.19405058f},
              5e-6);
  check_close(sd.at("params/bias").array(), {0.f, 0.f, 0.f}, 0);

  Array x = rnd::normal(key1, {10});
  nn::Dense dense{.features = 5};
  auto dv = dense.init(key2, x, nn::Compat::v2021);
  check_close(dense.apply(dv, x, nn::Compat::v2021),
              {-0.7358944f, 1.3583755f, -0.7976871f, 0.8168598f, 0.6297793f}, 5e-6);

  Array xu = rnd::uniform(key1, {4, 4});
  ExplicitMLP mlp{.features = {3, 4, 5}};
  auto mv = mlp.init(key2, xu, nn::Compat::v2021);
  CHECK(mv.at("params").keys() == std::vector<std::string>{"layers_0", "layers_1", "layers_2"});
  Array y = mlp.apply(mv, xu, nn::Compat::v2021);
  check_close(jnp::index(y, 0),
              {4.2292822e-02f, -4.3807123e-02f, 2.9323796e-02f, 6.5492545e-03f, -1.7147183e-02f},
              5e-6);
}

TEST_CASE("rng_guide Dense_0 with kernel_init = jax.random.normal, use_bias = False") {
  struct Wrap : nn::Module<Wrap> {
    Array operator()(nn::Scope& s, const Array& x) const {
      return s(nn::Dense{.features = 2,
                         .use_bias = false,
                         .kernel_init = [](rnd::Key k, const Shape& shape,
                                           DType) { return rnd::normal(k, shape); }},
               x);
    }
  };
  auto vars = Wrap{}.init(rnd::PRNGKey(0), jnp::ones({1, 2}));
  check_close(vars.at("params/Dense_0/kernel").array(),
              {-1.6185919f, 0.700908f, -1.3146383f, -0.79342234f}, 1e-6);
  CHECK(!vars.contains("params/Dense_0/bias"));
}

// ---- naming, plumbing, errors ---------------------------------------------------------------

namespace {
struct MLP : nn::Module<MLP> {  // Flax's README example
  std::vector<int64_t> features;
  Array operator()(nn::Scope& s, Array x) const {
    for (size_t i = 0; i + 1 < features.size(); ++i)
      x = nn::relu(s(nn::Dense{.features = features[i]}, x));
    return s(nn::Dense{.features = features.back()}, x);
  }
};
}  // namespace

TEST_CASE("autonames per class per parent, reset on every call; insertion order kept") {
  struct Mixed : nn::Module<Mixed> {
    Array operator()(nn::Scope& s, const Array& x) const {
      Array y = s(nn::Dense{.features = 3}, x);
      y = s(nn::LayerNorm{}, y);
      y = s(nn::Dense{.features = 2}, y);
      return s(MLP{.features = {2, 2}}, y);
    }
  };
  Array x = jnp::ones({2, 4});
  Mixed m;
  auto vars = m.init(rnd::PRNGKey(0), x);
  CHECK(vars.at("params").keys() ==
        std::vector<std::string>{"Dense_0", "LayerNorm_0", "Dense_1", "MLP_0"});
  CHECK(vars.at("params/MLP_0").keys() == std::vector<std::string>{"Dense_0", "Dense_1"});
  CHECK(vars.at("params/Dense_0").keys() == std::vector<std::string>{"kernel", "bias"});
  CHECK(vars.at("params/LayerNorm_0").keys() == std::vector<std::string>{"scale", "bias"});
  CHECK(vars.at("params/Dense_1/kernel").array().shape() == Shape{3, 2});
  // A second apply sees the same names (cursors reset per call).
  Array y1 = m.apply(vars, x), y2 = m.apply(vars, x);
  CHECK(y1.shape() == Shape{2, 2});
  CHECK(y1.to_float() == y2.to_float());
  // The top-level module's own name is ignored: a bare Dense has params at the root.
  auto dv = nn::Dense{.features = 3}.init(rnd::PRNGKey(0), x);
  CHECK(dv.at("params").keys() == std::vector<std::string>{"kernel", "bias"});
}

TEST_CASE("Sequential names list entries layers_i, counting plain functions") {
  nn::Sequential seq{.layers = {nn::Dense{.features = 4}, nn::relu, nn::Dense{.features = 2}}};
  auto vars = seq.init(rnd::PRNGKey(0), jnp::ones({1, 3}));
  CHECK(vars.at("params").keys() == std::vector<std::string>{"layers_0", "layers_2"});
}

TEST_CASE("shared submodule via a bound handle reuses its parameters") {
  struct Twice : nn::Module<Twice> {
    Array operator()(nn::Scope& s, const Array& x) const {
      auto dense = s.child("shared", nn::Dense{.features = 3});
      return dense(dense(x));
    }
  };
  auto vars = Twice{}.init(rnd::PRNGKey(0), jnp::ones({1, 3}));
  CHECK(vars.at("params").keys() == std::vector<std::string>{"shared"});
  CHECK(param_count(vars) == 12);
}

TEST_CASE("mutable collections: variable, put_variable, apply returns updates") {
  struct Counter : nn::Module<Counter> {
    Array operator()(nn::Scope& s, const Array& x) const {
      Array c = s.variable("counter", "count", [] { return Array(0.f); });
      if (!s.is_initializing()) s.put_variable("counter", "count", c + 1.f);
      return x;
    }
  };
  auto vars = Counter{}.init(rnd::PRNGKey(0), Array(1.f));
  CHECK(vars.at("counter/count").array().item<float>() == 0.f);
  auto [y, updates] = Counter{}.apply(vars, Array(1.f), nn::Mutable{"counter"});
  CHECK(updates.at("counter/count").array().item<float>() == 1.f);
  CHECK_THROWS_WITH_AS(
      Counter{}.apply(vars, Array(1.f)),
      "<root> (Counter): cannot write 'count': collection 'counter' is not mutable (pass "
      "nn::Mutable{\"counter\"} to apply)",
      nn::ModuleError);
}

TEST_CASE("errors name the module path") {
  Array x = jnp::ones({2, 4});
  MLP model{.features = {3, 2}};
  auto vars = model.init(rnd::PRNGKey(0), x);
  // Missing parameter.
  auto no_bias = Tree{{"params", vars["params"].erase("Dense_1/bias")}};
  CHECK_THROWS_WITH_AS(
      model.apply(no_bias, x),
      "Dense_1 (Dense): parameter 'bias' is missing from the variables (expected at "
      "'params/Dense_1/bias')",
      nn::ModuleError);
  // Stored shape differs from what the module expects.
  CHECK_THROWS_WITH_AS(
      model.apply(vars, jnp::ones({2, 5})),
      "Dense_0 (Dense): parameter 'kernel' has shape (4,3) in the variables; the module "
      "expects (5,3)",
      nn::ModuleError);
  // Name used twice in one call.
  struct Dup : nn::Module<Dup> {
    Array operator()(nn::Scope& s, const Array& x) const {
      s.call("proj", nn::Dense{.features = 2}, x);
      return s.call("proj", nn::Dense{.features = 2}, x);
    }
  };
  CHECK_THROWS_WITH_AS(Dup{}.init(rnd::PRNGKey(0), x),
                       "<root> (Dup): name 'proj' is used twice in this module", nn::ModuleError);
  // An rng stream the call needs but was not given.
  DropoutMLP dm;
  auto dv = dm.init(rnd::PRNGKey(0), x, false);
  CHECK_THROWS_WITH_AS(
      dm.apply(dv, x, true),
      "Dropout_0 (Dropout): needs the rng stream 'dropout', which was not provided (pass "
      "nn::Rngs{{\"dropout\", key}} to apply)",
      nn::ModuleError);
  // Wrong input rank / dtype.
  CHECK_THROWS_WITH_AS(model.apply(vars, Array::from({2}, std::vector<int32_t>{1, 2})),
                       "Dense_0 (Dense): expected a float32 input of rank >= 1, got int32 (2,)",
                       nn::ModuleError);
  nn::Embed embed{.num_embeddings = 5, .features = 2};
  Array bad_ids = Array::from({2}, std::vector<int32_t>{1, 5});
  CHECK_THROWS_WITH_AS(
      embed.init(rnd::PRNGKey(0), bad_ids),
      "<root> (Embed): token id 5 at flat position 1 is out of range for num_embeddings = 5 "
      "(valid: [-5, 5))",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(embed.init(rnd::PRNGKey(0), jnp::ones({2})),
                       "<root> (Embed): token ids must be integers (int32), got float32 (2,)",
                       nn::ModuleError);
}

TEST_CASE("init and apply through another method (Flax's method=)") {
  struct AutoEncoder : nn::Module<AutoEncoder> {
    Array operator()(nn::Scope& s, const Array& x) const { return decode(s, encode(s, x)); }
    Array encode(nn::Scope& s, const Array& x) const {
      return s.call("encoder", nn::Dense{.features = 2}, x);
    }
    Array decode(nn::Scope& s, const Array& z) const {
      return s.call("decoder", nn::Dense{.features = 3}, z);
    }
  };
  AutoEncoder ae;
  Array x = Array::matrix({{1, -2, 3}, {0.5f, 0, -1}});
  Tree vars = ae.init(rnd::PRNGKey(0), x);
  CHECK(vars.at("params").keys() == std::vector<std::string>{"encoder", "decoder"});
  // The methods alone, composed, give the whole call's output.
  Array z = ae.apply(vars, &AutoEncoder::encode, x);
  CHECK(z.shape() == Shape{2, 2});
  Array y = ae.apply(vars, &AutoEncoder::decode, z);
  CHECK(y.to_float() == ae.apply(vars, x).to_float());
  // init through a method makes only the parameters that method uses, with the same values
  // (each parameter's key comes from its path, not from the call order).
  Tree enc = ae.init(rnd::PRNGKey(0), &AutoEncoder::encode, x);
  CHECK(enc.at("params").keys() == std::vector<std::string>{"encoder"});
  CHECK(enc.at("params/encoder/kernel").array().to_float() ==
        vars.at("params/encoder/kernel").array().to_float());
  // A method whose parameters are missing fails naming them, as apply does.
  CHECK_THROWS_WITH_AS(
      ae.apply(enc, &AutoEncoder::decode, z),
      "decoder (Dense): parameter 'kernel' is missing from the variables (expected at "
      "'params/decoder/kernel')",
      nn::ModuleError);
}

TEST_CASE("a compact child re-created by a second call: rng counter restarts under v2021 only") {
  // flax-semantics §2.3: Flax 0.3.4 pushes a fresh scope for the re-created Dropout_0, whose
  // 'dropout' counter starts again at 1 (same key, same mask); from 0.4.0 it continues (2).
  struct Drop : nn::Module<Drop> {
    Array operator()(nn::Scope& s, const Array& x) const {
      return s(nn::Dropout{.rate = 0.5, .deterministic = false}, x);
    }
  };
  struct Twice : nn::Module<Twice> {
    Array operator()(nn::Scope& s, const Array& x) const {
      auto inner = s.child("inner", Drop{});  // one handle, called twice: Drop runs twice
      return jnp::stack({inner(x), inner(x)});
    }
  };
  Array x = jnp::ones({64});
  for (auto compat : {nn::Compat::v2021, nn::Compat::v2024, nn::Compat::current}) {
    CAPTURE(static_cast<int>(compat));
    Tree vars = Twice{}.init(nn::Rngs{{"params", rnd::PRNGKey(0)}, {"dropout", rnd::PRNGKey(1)}}, x,
                             compat);
    Array y = Twice{}.apply(vars, x, nn::Rngs{{"dropout", rnd::PRNGKey(1)}}, compat);
    std::vector<float> first = jnp::index(y, 0).to_float(), second = jnp::index(y, 1).to_float();
    CHECK(std::count(first.begin(), first.end(), 0.f) > 16);  // a real mask, not all kept
    if (compat == nn::Compat::v2021)
      CHECK(first == second);
    else
      CHECK(first != second);
  }
}
