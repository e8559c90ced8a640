// Tests for models/gmlp.hpp: the exact parameter trees of gmlp_flax (flax-semantics.md §3.3, §3.4:
// every path, shape, insertion order and sorted order), the golden parameter counts (gmlp.md),
// the derived 2021-profile values (flax-semantics.md §7.6), and the spatial parameters of the
// extension (their place in the SGU, their rng counters and their values, bit for bit).
// Behaviours (causality, masks, errors, gradients) are in gmlp_behaviour_test.cpp.
#include "models/gmlp.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "core/ops.hpp"
#include "core/random.hpp"
#include "core/tree.hpp"

using namespace flaxpp;
namespace rnd = flaxpp::random;

namespace {

using PathShape = std::pair<std::string, Shape>;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The §3.3 / §3.4 listing: params in insertion (write) order. Spatial entries when seq_len > 0.
std::vector<PathShape> expected_insertion_order(int64_t num_tokens, int64_t dim, int64_t depth,
                                                int64_t ff_mult, int64_t attn_dim,
                                                int64_t seq_len) {
  const int64_t ff = dim * ff_mult, half = ff / 2;
  std::vector<PathShape> v{{"to_embed/embedding", {num_tokens, dim}}};
  for (int64_t i = 0; i < depth; ++i) {
    const std::string P = "layers_" + std::to_string(i) + "/layers_0/";  // Residual -> PreNorm
    const std::string B = P + "layers_0/";                               // PreNorm -> gMLPBlock
    v.push_back({P + "norm/scale", {dim}});
    v.push_back({P + "norm/bias", {dim}});
    if (attn_dim > 0) {  // attn runs before proj_in, so it is written first
      v.push_back({B + "attn/to_qkv/kernel", {dim, 3 * attn_dim}});
      v.push_back({B + "attn/to_qkv/bias", {3 * attn_dim}});
      v.push_back({B + "attn/to_out/kernel", {attn_dim, half}});
      v.push_back({B + "attn/to_out/bias", {half}});
    }
    v.push_back({B + "proj_in/kernel", {dim, ff}});
    v.push_back({B + "proj_in/bias", {ff}});
    v.push_back({B + "sgu/norm/scale", {half}});
    v.push_back({B + "sgu/norm/bias", {half}});
    if (seq_len > 0) {  // the extension: after norm, before proj_out (gmlp.md §2.2)
      v.push_back({B + "sgu/spatial_weights", {seq_len, seq_len}});
      v.push_back({B + "sgu/spatial_biases", {seq_len, 1}});
    }
    v.push_back({B + "sgu/proj_out/kernel", {half, half}});
    v.push_back({B + "sgu/proj_out/bias", {half}});
    v.push_back({B + "proj_out/kernel", {half, dim}});
    v.push_back({B + "proj_out/bias", {dim}});
  }
  v.push_back({"to_logits/layers_0/scale", {dim}});
  v.push_back({"to_logits/layers_0/bias", {dim}});
  v.push_back({"to_logits/layers_1/kernel", {dim, num_tokens}});
  v.push_back({"to_logits/layers_1/bias", {num_tokens}});
  return v;
}

std::vector<std::string> split_path(const std::string& p) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t i = 0; i <= p.size(); ++i)
    if (i == p.size() || p[i] == '/') {
      parts.push_back(p.substr(start, i - start));
      start = i + 1;
    }
  return parts;
}

// JAX's order: dict keys sorted byte-wise at every level, i.e. paths compared part by part.
std::vector<std::string> jax_sorted(std::vector<PathShape> v) {
  std::sort(v.begin(), v.end(), [](const PathShape& a, const PathShape& b) {
    return split_path(a.first) < split_path(b.first);
  });
  std::vector<std::string> r;
  for (auto& [p, s] : v) r.push_back(p);
  return r;
}

std::vector<PathShape> flat_shapes(const Tree& params) {
  std::vector<PathShape> r;
  for (auto& [path, leaf] : flatten_dict(params)) r.push_back({path, leaf.shape()});
  return r;
}

// Checks the sorted traversal two ways: the leaves tree_leaves returns are the very arrays at the
// expected paths (same buffers), and tree_map_with_path visits the paths in that order.
void check_sorted_order(const Tree& params, const std::vector<std::string>& want) {
  std::vector<Array> leaves = tree_leaves(params);
  REQUIRE(leaves.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("sorted leaf " << i << " should be " << want[i]);
    CHECK(leaves[i].shares_buffer_with(params.at(want[i]).array()));
  }
  std::vector<std::string> visited;
  tree_map_with_path(
      [&](const std::string& path, const Array& x) {
        visited.push_back(path);
        return x;
      },
      params);
  CHECK(visited == want);
}

int64_t count_of(const std::vector<PathShape>& v) {
  int64_t n = 0;
  for (auto& [p, s] : v) n += numel(s);
  return n;
}

std::vector<float> first_values(const Array& a, size_t n) {
  const float* p = a.data<float>();
  return std::vector<float>(p, p + n);
}

bool bit_equal(const Array& a, const Array& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

}  // namespace

TEST_CASE(
    "README model gMLP(num_tokens=20000, dim=512, depth=4): tree §3.3, counts, 2021 values §7.6") {
  // The README, under the 2021 profile (flax 0.3.4 keys, JAX 0.2.16 bits):
  //   key = PRNGKey(0); x = randint(key, (1, 1000), 0, 20000); model.init({"params": key}, x)
  rnd::Key key = rnd::PRNGKey(0);
  Array x;
  {
    rnd::ScopedBitsMode legacy(nn::bits_mode_of(nn::Compat::v2021));
    x = rnd::randint(key, {1, 1000}, 0, 20000);
  }
  models::gMLP model{.num_tokens = 20000, .dim = 512, .depth = 4};
  auto t0 = std::chrono::steady_clock::now();
  Tree variables = model.init(nn::Rngs{{"params", key}}, x, nn::Compat::v2021);
  MESSAGE("README model init: " << seconds_since(t0) << " s");

  REQUIRE(variables.keys() == std::vector<std::string>{"params"});
  const Tree& params = variables["params"];
  auto want = expected_insertion_order(20000, 512, 4, 4, 0, 0);

  {  // every path and shape, in insertion order (flatten_dict)
    CHECK(flat_shapes(params) == want);
    CHECK(params.keys() == std::vector<std::string>{"to_embed", "layers_0", "layers_1", "layers_2",
                                                    "layers_3", "to_logits"});
    CHECK(params.at("layers_0/layers_0").keys() == std::vector<std::string>{"norm", "layers_0"});
    CHECK(params.at("layers_0/layers_0/layers_0").keys() ==
          std::vector<std::string>{"proj_in", "sgu", "proj_out"});
    CHECK(params.at("layers_0/layers_0/layers_0/sgu").keys() ==
          std::vector<std::string>{"norm", "proj_out"});
  }
  {  // sorted order, as tree_leaves / tree_map see it
    auto sorted = jax_sorted(want);
    // Landmarks of §3.3's sorted listing, spelled out.
    CHECK(sorted.front() == "layers_0/layers_0/layers_0/proj_in/bias");
    CHECK(std::vector<std::string>(sorted.begin(), sorted.begin() + 10) ==
          std::vector<std::string>{"layers_0/layers_0/layers_0/proj_in/bias",
                                   "layers_0/layers_0/layers_0/proj_in/kernel",
                                   "layers_0/layers_0/layers_0/proj_out/bias",
                                   "layers_0/layers_0/layers_0/proj_out/kernel",
                                   "layers_0/layers_0/layers_0/sgu/norm/bias",
                                   "layers_0/layers_0/layers_0/sgu/norm/scale",
                                   "layers_0/layers_0/layers_0/sgu/proj_out/bias",
                                   "layers_0/layers_0/layers_0/sgu/proj_out/kernel",
                                   "layers_0/layers_0/norm/bias", "layers_0/layers_0/norm/scale"});
    CHECK(std::vector<std::string>(sorted.end() - 5, sorted.end()) ==
          std::vector<std::string>{"to_embed/embedding", "to_logits/layers_0/bias",
                                   "to_logits/layers_0/scale", "to_logits/layers_1/bias",
                                   "to_logits/layers_1/kernel"});
    check_sorted_order(params, sorted);
    CHECK(tree_shapes(Tree{{"to_logits", params["to_logits"]}}) ==
          "{'to_logits': {'layers_0': {'bias': (512,), 'scale': (512,)}, "
          "'layers_1': {'bias': (20000,), 'kernel': (512, 20000)}}}");
  }
  {  // golden counts
    CHECK(param_count(params) == 31013408);
    CHECK(param_bytes(params) == 124053632);
    CHECK(count_of(want) == 31013408);
    for (int i = 0; i < 4; ++i)
      CHECK(param_count(params["layers_" + std::to_string(i)]) == 2628096);
    CHECK(param_count(params["to_embed"]) == 10240000);
    CHECK(param_count(params["to_logits"]) == 1024 + 10260000);
  }
  {  // derived 2021-profile values (flax-semantics §7.6), printed to 6 decimals
    auto emb = first_values(params.at("to_embed/embedding").array(), 3);
    auto pin = first_values(params.at("layers_0/layers_0/layers_0/proj_in/kernel").array(), 3);
    std::vector<float> want_emb = {-0.0149658f, -0.0323081f, 0.0191250f};
    std::vector<float> want_pin = {0.0626356f, 0.0111538f, -0.0219766f};
    for (int i = 0; i < 3; ++i) {
      CHECK(std::fabs(emb[i] - want_emb[i]) <= 1e-6);
      CHECK(std::fabs(pin[i] - want_pin[i]) <= 1e-6);
    }
    // Constant initialisers: LayerNorm scale 1 / bias 0, Dense bias 0.
    CHECK(jnp::max(jnp::abs(params.at("to_logits/layers_1/bias").array())).item<float>() == 0.f);
    CHECK(jnp::min(params.at("layers_3/layers_0/norm/scale").array()).item<float>() == 1.f);
    // The README's tokens (legacy bits) are in range; the model runs on them.
    CHECK(jnp::min(x).item<int32_t>() >= 0);
    CHECK(jnp::max(x).item<int32_t>() < 20000);
  }
}

TEST_CASE("gMLP(num_tokens=256, dim=64, depth=2, attn_dim=32): tree §3.4, 137,664 parameters") {
  models::gMLP model{.num_tokens = 256, .dim = 64, .depth = 2, .attn_dim = 32};
  // gmlp_flax's attention only ran on unbatched (n,) tokens; ours takes both, same tree.
  Array tokens = rnd::randint(rnd::PRNGKey(1), {16}, 0, 256);
  Tree params = model.init(rnd::PRNGKey(0), tokens)["params"];
  auto want = expected_insertion_order(256, 64, 2, 4, 32, 0);
  CHECK(flat_shapes(params) == want);
  CHECK(params.at("layers_1/layers_0/layers_0").keys() ==
        std::vector<std::string>{"attn", "proj_in", "sgu", "proj_out"});
  CHECK(param_count(params) == 137664);
  CHECK(count_of(want) == 137664);
  CHECK(param_count(params["layers_0"]) == 52256);
  CHECK(param_count(params["layers_1"]) == 52256);
  // §3.4 in JAX's sorted order, written out for layer 0 (layer 1 is the same under layers_1).
  std::vector<std::string> sorted_layer0 = {"layers_0/layers_0/layers_0/attn/to_out/bias",
                                            "layers_0/layers_0/layers_0/attn/to_out/kernel",
                                            "layers_0/layers_0/layers_0/attn/to_qkv/bias",
                                            "layers_0/layers_0/layers_0/attn/to_qkv/kernel",
                                            "layers_0/layers_0/layers_0/proj_in/bias",
                                            "layers_0/layers_0/layers_0/proj_in/kernel",
                                            "layers_0/layers_0/layers_0/proj_out/bias",
                                            "layers_0/layers_0/layers_0/proj_out/kernel",
                                            "layers_0/layers_0/layers_0/sgu/norm/bias",
                                            "layers_0/layers_0/layers_0/sgu/norm/scale",
                                            "layers_0/layers_0/layers_0/sgu/proj_out/bias",
                                            "layers_0/layers_0/layers_0/sgu/proj_out/kernel",
                                            "layers_0/layers_0/norm/bias",
                                            "layers_0/layers_0/norm/scale"};
  std::vector<std::string> sorted = sorted_layer0;
  for (auto& p : sorted_layer0) sorted.push_back("layers_1" + p.substr(8));
  for (const char* p : {"to_embed/embedding", "to_logits/layers_0/bias", "to_logits/layers_0/scale",
                        "to_logits/layers_1/bias", "to_logits/layers_1/kernel"})
    sorted.push_back(p);
  CHECK(sorted == jax_sorted(want));
  check_sorted_order(params, sorted);

  // Batched (B, L) tokens give the same tree and the same values (shapes do not depend on L or B),
  // so a single token initialises the same model (what `flaxpp init gmlp` and the bench do).
  Tree batched = model.init(rnd::PRNGKey(0), jnp::reshape(tokens, {2, 8}))["params"];
  CHECK(tree_equal(params, batched));
  CHECK(
      tree_equal(params, model.init(rnd::PRNGKey(0), jnp::zeros({1, 1}, DType::int32))["params"]));
}

TEST_CASE("depth >= 11: layers_10 sorts before layers_2 in tree_leaves, not in insertion order") {
  models::gMLP model{.num_tokens = 5, .dim = 4, .depth = 12, .ff_mult = 2};
  Tree params =
      model.init(rnd::PRNGKey(0), Array::from({3}, std::vector<int32_t>{0, 1, 2}))["params"];
  std::vector<std::string> keys = params.keys();
  CHECK(keys[1] == "layers_0");
  CHECK(keys[3] == "layers_2");
  CHECK(keys[11] == "layers_10");
  auto sorted = jax_sorted(flat_shapes(params));
  check_sorted_order(params, sorted);
  // Each layer has 10 leaves; sorted, layers_1's are followed by layers_10's, then layers_11's.
  CHECK(sorted[10].rfind("layers_1/", 0) == 0);
  CHECK(sorted[20].rfind("layers_10/", 0) == 0);
  CHECK(sorted[30].rfind("layers_11/", 0) == 0);
  CHECK(sorted[40].rfind("layers_2/", 0) == 0);
}

TEST_CASE("spatial params: place in the SGU, rng counters 1 and 2, values bit-exact") {
  const int64_t n = 16;
  for (nn::Compat compat : {nn::Compat::current, nn::Compat::v2021}) {
    CAPTURE(nn::compat_name(compat));
    for (bool causal : {true, false}) {
      models::gMLP model{
          .num_tokens = 32, .dim = 8, .depth = 2, .attn_dim = 4, .seq_len = n, .causal = causal};
      Array tokens = rnd::randint(rnd::PRNGKey(3), {2, n}, 0, 32);
      rnd::Key key = rnd::PRNGKey(7);
      Tree params = model.init(key, tokens, compat)["params"];
      auto want = expected_insertion_order(32, 8, 2, 4, 4, n);
      CHECK(flat_shapes(params) == want);
      CHECK(param_count(params) == count_of(want));
      // Closed form (torch_gmlp._expected_param_count): per layer + n*n + n.
      const int64_t d = 8, ff = 32, h = 16, a = 4;
      int64_t per = 2 * d + (d * ff + ff) + 2 * h + (h * h + h) + (h * d + d) +
                    (d * 3 * a + 3 * a) + (a * h + h) + n * n + n;
      CHECK(param_count(params) == 2 * per + 32 * d + 2 * d + d * 32 + 32);

      // The bound is float32(1e-3 / n) computed in double (as JAX does with a Python float).
      const float bound = static_cast<float>(1e-3 / static_cast<double>(n));
      for (int i = 0; i < 2; ++i) {
        const std::string layer = "layers_" + std::to_string(i);
        const Tree& sgu = params.at(layer + "/layers_0/layers_0/sgu");
        CHECK(sgu.keys() ==
              std::vector<std::string>{"norm", "spatial_weights", "spatial_biases", "proj_out"});
        // spatial_weights is the SGU scope's first make_rng("params") (counter 1) ...
        rnd::Key k1 = nn::derive_key(compat, key, {layer, "layers_0", "layers_0", "sgu"}, 1);
        Array expected;
        {
          rnd::ScopedBitsMode mode(nn::bits_mode_of(compat));
          expected = rnd::uniform(k1, {n, n}, -bound, bound);
        }
        const Array& w = sgu["spatial_weights"].array();
        CHECK(bit_equal(w, expected));
        CHECK(jnp::min(w).item<float>() >= -bound);
        CHECK(jnp::max(w).item<float>() < bound);
        // ... and spatial_biases its second (counter 2; ones ignore the key). The child scopes
        // (norm, proj_out) count separately: proj_out's kernel still uses counter 1.
        CHECK(bit_equal(sgu["spatial_biases"].array(), jnp::ones({n, 1})));
        Array pk = sgu.at("proj_out/kernel").array();
        rnd::Key kp =
            nn::derive_key(compat, key, {layer, "layers_0", "layers_0", "sgu", "proj_out"}, 1);
        rnd::ScopedBitsMode mode(nn::bits_mode_of(compat));
        CHECK(bit_equal(pk, nn::initializers::lecun_normal()(kp, {16, 16}, DType::float32)));
      }
      // Different layers draw different W.
      CHECK_FALSE(bit_equal(params.at("layers_0/layers_0/layers_0/sgu/spatial_weights").array(),
                            params.at("layers_1/layers_0/layers_0/sgu/spatial_weights").array()));
    }
  }
  // The spatial extension adds nothing else: without seq_len the same config has no spatial params.
  models::gMLP original{.num_tokens = 32, .dim = 8, .depth = 2, .attn_dim = 4};
  Tree p0 =
      original.init(rnd::PRNGKey(7), Array::from({4}, std::vector<int32_t>{1, 2, 3, 4}))["params"];
  CHECK(flat_shapes(p0) == expected_insertion_order(32, 8, 2, 4, 4, 0));
}

TEST_CASE("gMLP for vision: gMLP-Ti / S / B parameter counts at 224x224 (gmlp.md §2.5)") {
  Array images = jnp::zeros({1, 224, 224, 3});
  struct Golden {
    std::string name;
    models::gMLPVision model;
    int64_t count;
  };
  std::vector<Golden> golden = {{"gMLP-Ti", models::gmlp_vision_ti(), 5867328},
                                {"gMLP-S", models::gmlp_vision_s(), 19422656},
                                {"gMLP-B", models::gmlp_vision_b(), 73075392}};
  for (auto& g : golden) {
    // Plain references, not a structured binding: CAPTURE is a lambda, and clang 14 does not
    // let a lambda capture a binding.
    const std::string& name = g.name;
    const models::gMLPVision& model = g.model;
    const int64_t count = g.count;
    CAPTURE(name);
    auto t0 = std::chrono::steady_clock::now();
    Tree params = model.init(rnd::PRNGKey(0), images)["params"];
    MESSAGE(name << " init on (1,224,224,3): " << seconds_since(t0) << " s");
    CHECK(param_count(params) == count);
    // Per block: LayerNorm(d) + Dense(d->6d) + LayerNorm(3d) + W n*n + b n + Dense(3d->d), n = 196;
    // stem Dense(3*16*16->d); head LayerNorm(d) + Dense(d->1000).
    const int64_t d = model.dim, n = 196;
    const int64_t block = 2 * d + (d * 6 * d + 6 * d) + 2 * 3 * d + n * n + n + (3 * d * d + d);
    CHECK(param_count(params["blocks_0"]) == block);
    CHECK(count == (768 * d + d) + 30 * block + 2 * d + (d * 1000 + 1000));
    // Tree of one block, in insertion order; no Dense inside the SGU.
    std::vector<PathShape> want_block = {{"norm/scale", {d}},
                                         {"norm/bias", {d}},
                                         {"proj_in/kernel", {d, 6 * d}},
                                         {"proj_in/bias", {6 * d}},
                                         {"sgu/norm/scale", {3 * d}},
                                         {"sgu/norm/bias", {3 * d}},
                                         {"sgu/spatial_weights", {n, n}},
                                         {"sgu/spatial_biases", {n, 1}},
                                         {"proj_out/kernel", {3 * d, d}},
                                         {"proj_out/bias", {d}}};
    CHECK(flat_shapes(params["blocks_29"]) == want_block);
    std::vector<std::string> top = {"stem"};
    for (int i = 0; i < 30; ++i) top.push_back("blocks_" + std::to_string(i));
    top.push_back("norm");
    top.push_back("head");
    CHECK(params.keys() == top);
    CHECK(params.at("stem/kernel").array().shape() == Shape{768, d});
    CHECK(params.at("head/kernel").array().shape() == Shape{d, 1000});
  }
}
