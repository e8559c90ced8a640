// Tests for core/tree.hpp: Tree, TreeBuilder, tree_util, traverse_util, Differentiable<Tree>.
#include "core/tree.hpp"

#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "core/ops.hpp"

using namespace flaxpp;

namespace {
Array iota(const Shape& s, float start = 0.f) {
  std::vector<float> v(static_cast<size_t>(numel(s)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = start + static_cast<float>(i);
  return Array::from(s, v);
}
// {'params': {'Dense_0': {'kernel': (4,3), 'bias': (3,)}}} in Flax's init (insertion) order.
Tree dense_vars() {
  return Tree{
      {"params", Tree{{"Dense_0", Tree{{"kernel", iota({4, 3})}, {"bias", iota({3}, 100)}}}}}};
}
std::vector<std::string> strs(std::initializer_list<const char*> l) { return {l.begin(), l.end()}; }
}  // namespace

TEST_CASE("Tree: construction, lookup by key and by path, insertion order") {
  Tree v = dense_vars();
  CHECK(v.is_dict());
  CHECK(v.size() == 1);
  CHECK(v.keys() == strs({"params"}));
  CHECK(v["params"]["Dense_0"].keys() == strs({"kernel", "bias"}));
  CHECK(v.at("params/Dense_0/kernel").is_leaf());
  CHECK(v.at("params/Dense_0/kernel").array().shape() == Shape{4, 3});
  CHECK(&v.at("") == &v);
  CHECK(v.contains("params/Dense_0/bias"));
  CHECK_FALSE(v.contains("params/Dense_1"));
  CHECK_FALSE(v.contains("params/Dense_0/bias/x"));
  CHECK(v.find("params/nope") == nullptr);
  CHECK(Tree().empty());
  CHECK(Tree(iota({2})).is_leaf());

  // Nested braces without naming Tree.
  Tree nested{{"a", {{"b", iota({1})}}}};
  CHECK(nested.at("a/b").array().shape() == Shape{1});
}

TEST_CASE("Tree: errors name the key or path") {
  Tree v = dense_vars();
  CHECK_THROWS_WITH_AS(v["nope"], "Tree: no key 'nope' (keys: [params])", std::out_of_range);
  CHECK_THROWS_WITH_AS(v.at("params/Dense_0/weight"),
                       "Tree::at: no 'params/Dense_0/weight': 'params/Dense_0' has keys "
                       "[kernel, bias]",
                       std::out_of_range);
  CHECK_THROWS_WITH_AS(v.at("params/Dense_0/bias/x"),
                       "Tree::at: no 'params/Dense_0/bias/x': 'params/Dense_0/bias' is an array",
                       std::out_of_range);
  CHECK_THROWS_AS(v.array(), std::invalid_argument);
  CHECK_THROWS_WITH_AS((Tree{{"a", iota({1})}, {"a", iota({1})}}), "Tree: duplicate key 'a'",
                       std::invalid_argument);
  CHECK_THROWS_AS((Tree{{"a/b", iota({1})}}), std::invalid_argument);
  CHECK_THROWS_AS((Tree{{"", iota({1})}}), std::invalid_argument);
  CHECK_THROWS_AS(v.at("params//kernel"), std::invalid_argument);
}

TEST_CASE("Tree: set / erase / merge return new trees and share the rest") {
  Tree v = dense_vars();
  Tree v2 = v.set("params/Dense_1/kernel", iota({3, 2}));
  CHECK_FALSE(v.contains("params/Dense_1"));  // unchanged
  CHECK(v2["params"].keys() == strs({"Dense_0", "Dense_1"}));
  CHECK(v2["params"]["Dense_0"].shares_structure_with(v["params"]["Dense_0"]));
  CHECK(v2.at("params/Dense_0/kernel")
            .array()
            .shares_buffer_with(v.at("params/Dense_0/kernel").array()));

  // Replacing keeps the key's position.
  Tree v3 = v.set("params/Dense_0/kernel", iota({4, 3}, 7));
  CHECK(v3["params"]["Dense_0"].keys() == strs({"kernel", "bias"}));
  CHECK(v3.at("params/Dense_0/kernel").array().data<float>()[0] == 7.f);
  CHECK(v.at("params/Dense_0/kernel").array().data<float>()[0] == 0.f);

  CHECK_THROWS_WITH_AS(v.set("params/Dense_0/bias/x", iota({1})),
                       "Tree::set: cannot set 'params/Dense_0/bias/x': 'params/Dense_0/bias' is "
                       "an array",
                       std::invalid_argument);

  Tree e = v.erase("params/Dense_0/kernel");
  CHECK(e["params"]["Dense_0"].keys() == strs({"bias"}));
  CHECK(v["params"]["Dense_0"].size() == 2);
  Tree e2 = v.erase("params/Dense_0").erase("params");
  CHECK(e2.empty());
  CHECK_THROWS_AS(v.erase("params/nope"), std::out_of_range);

  Tree stats{{"batch_stats", Tree{{"mean", iota({3})}}}};
  Tree m = v.merge(stats);
  CHECK(m.keys() == strs({"params", "batch_stats"}));
  Tree m2 = m.merge(Tree{{"params", Tree{{"Dense_0", Tree{{"bias", iota({3}, 5)}}}}}});
  CHECK(m2["params"]["Dense_0"].keys() == strs({"kernel", "bias"}));  // deep merge
  CHECK(m2.at("params/Dense_0/bias").array().data<float>()[0] == 5.f);
}

TEST_CASE("TreeBuilder: insertion order, replacement, many sets") {
  TreeBuilder b;
  b.set("params/to_embed/embedding", iota({5, 2}));
  b.set(std::vector<std::string>{"params", "layers_0", "kernel"}, iota({2, 2}));
  b.set("params/layers_0/bias", iota({2}));
  b.set("params/to_embed/embedding", iota({5, 2}, 1));  // replace in place
  CHECK(b.num_leaves() == 3);
  CHECK(b.contains("params/layers_0"));
  REQUIRE(b.find("params/layers_0/bias") != nullptr);
  CHECK(b.find("params/layers_0") == nullptr);  // a dict, not a leaf
  Tree t = b.build();
  CHECK(t["params"].keys() == strs({"to_embed", "layers_0"}));
  CHECK(t["params"]["layers_0"].keys() == strs({"kernel", "bias"}));
  CHECK(t.at("params/to_embed/embedding").array().data<float>()[0] == 1.f);
  CHECK_THROWS_AS(b.set("params/layers_0/bias/x", iota({1})), std::invalid_argument);

  TreeBuilder big;
  Array leaf = iota({1});
  for (int i = 0; i < 5000; ++i)
    big.set("params/block_" + std::to_string(i % 50) + "/p" + std::to_string(i), leaf);
  CHECK(big.num_leaves() == 5000);
  Tree bt = big.build();
  CHECK(param_count(bt) == 5000);
  CHECK(bt["params"].keys()[0] == "block_0");
  CHECK(bt["params"]["block_3"].keys()[1] == "p53");

  TreeBuilder from(dense_vars());
  from.set("params/Dense_0/extra", iota({1}));
  CHECK(from.build()["params"]["Dense_0"].keys() == strs({"kernel", "bias", "extra"}));
}

TEST_CASE("tree_leaves / tree_structure visit keys in sorted order") {
  Tree t{{"layers_2", iota({2})},
         {"layers_10", iota({1})},
         {"b", Tree{{"kernel", iota({3})}, {"bias", iota({4})}}}};
  auto leaves = tree_leaves(t);
  REQUIRE(leaves.size() == 4);
  CHECK(leaves[0].shape() == Shape{4});  // b/bias
  CHECK(leaves[1].shape() == Shape{3});  // b/kernel
  CHECK(leaves[2].shape() == Shape{1});  // layers_10 < layers_2 (byte-wise)
  CHECK(leaves[3].shape() == Shape{2});

  TreeDef d = tree_structure(t);
  CHECK(d.num_leaves() == 4);
  CHECK(d.str() == "PyTreeDef({'b': {'bias': *, 'kernel': *}, 'layers_10': *, 'layers_2': *})");
  Tree reordered{{"b", Tree{{"bias", iota({9})}, {"kernel", iota({9})}}},
                 {"layers_10", iota({1})},
                 {"layers_2", iota({1})}};
  CHECK(tree_structure(reordered) == d);  // insertion order does not matter
  CHECK_FALSE(tree_structure(dense_vars()) == d);
  CHECK(tree_structure(Tree(iota({1}))).str() == "PyTreeDef(*)");
  CHECK(tree_structure(Tree()).str() == "PyTreeDef({})");

  auto [l, def] = tree_flatten(t);
  Tree back = tree_unflatten(def, l);
  CHECK(tree_equal(back, t));
  CHECK(back.keys() == strs({"b", "layers_10", "layers_2"}));  // rebuilt sorted, as JAX
  CHECK_THROWS_AS(tree_unflatten(def, {}), std::invalid_argument);
}

TEST_CASE("tree_map: one, two, vector of trees; sorted call order, insertion-ordered result") {
  Tree v = dense_vars();
  std::vector<std::string> order;
  Tree doubled = tree_map_with_path(
      [&](const std::string& path, const Array& x) {
        order.push_back(path);
        return x * 2.f;
      },
      v);
  CHECK(order == strs({"params/Dense_0/bias", "params/Dense_0/kernel"}));
  CHECK(doubled["params"]["Dense_0"].keys() == strs({"kernel", "bias"}));
  CHECK(doubled.at("params/Dense_0/bias").array().data<float>()[1] == 202.f);

  Tree sum = tree_map([](const Array& a, const Array& b) { return a + b; }, v, doubled);
  CHECK(sum.at("params/Dense_0/kernel").array().data<float>()[5] == 15.f);

  Tree three = tree_map([](const std::vector<Array>& xs) { return xs[0] + xs[1] + xs[2]; },
                        std::vector<Tree>{v, v, v});
  CHECK(three.at("params/Dense_0/bias").array().data<float>()[0] == 300.f);

  Tree other{{"params", Tree{{"Dense_0", Tree{{"kernel", iota({4, 3})}}}}}};
  CHECK_THROWS_WITH_AS(
      tree_map([](const Array& a, const Array& b) { return a + b; }, v, other),
      "tree_map: tree structures differ at 'params/Dense_0': a dict with keys [bias, kernel] in "
      "tree 0, a dict with keys [kernel] in tree 1",
      std::invalid_argument);
}

TEST_CASE("flatten_dict / unflatten_dict, counting, allclose, printing") {
  Tree v = dense_vars().set("params/empty", Tree());
  auto flat = flatten_dict(v);
  REQUIRE(flat.size() == 2);                        // empty dicts dropped, as Flax
  CHECK(flat[0].first == "params/Dense_0/kernel");  // insertion order
  CHECK(flat[1].first == "params/Dense_0/bias");
  CHECK(flatten_dict(v, ".")[0].first == "params.Dense_0.kernel");
  Tree back = unflatten_dict(flat);
  CHECK(back["params"]["Dense_0"].keys() == strs({"kernel", "bias"}));
  CHECK(tree_equal(back, dense_vars()));
  CHECK(tree_equal(unflatten_dict(flatten_dict(v, "::"), "::"), dense_vars()));

  CHECK(param_count(v) == 15);
  CHECK(param_bytes(v) == 60);
  Tree mixed{{"step", Array(int32_t{3})}, {"mask", Array::from_bool({2}, {true, false})}};
  CHECK(param_count(mixed) == 3);
  CHECK(param_bytes(mixed) == 6);

  Tree w = dense_vars();
  Tree w2 = tree_map([](const Array& x) { return x * 1.000001f; }, w);
  CHECK(allclose(w, w2));
  CHECK_FALSE(allclose(w, tree_map([](const Array& x) { return x + 0.5f; }, w)));
  CHECK_FALSE(allclose(w, w.set("params/Dense_0/bias", iota({1, 3}, 100))));  // shape differs
  CHECK_THROWS_AS(allclose(w, w.erase("params/Dense_0/bias")), std::invalid_argument);
  Tree nan{{"x", Array::vector({std::numeric_limits<float>::quiet_NaN()})}};
  CHECK_FALSE(allclose(nan, nan));
  Tree inf{{"x", Array::vector({std::numeric_limits<float>::infinity()})}};
  CHECK(allclose(inf, inf));
  CHECK_FALSE(tree_equal(w, w2));
  CHECK(tree_equal(w, dense_vars()));

  CHECK(tree_shapes(w) == "{'params': {'Dense_0': {'bias': (3,), 'kernel': (4, 3)}}}");
  CHECK(tree_shapes(Tree{{"s", Array(1.f)}, {"it's", iota({2, 3, 4})}}) ==
        "{\"it's\": (2, 3, 4), 's': ()}");
  std::ostringstream os;
  os << w.set("step", Array(int32_t{0}));
  CHECK(os.str() ==
        "{'params': {'Dense_0': {'kernel': float32[4,3], 'bias': float32[3]}}, 'step': int32[]}");
}

TEST_CASE("grad over a Tree returns a Tree of the same structure") {
  // f(params, x) = sum(W * x) + sum(b): dW = x (broadcast), db = ones.
  Tree params{{"Dense_0", Tree{{"kernel", iota({2, 3}, 1)}, {"bias", iota({3})}}}};
  Array x = Array::vector({0.5f, -1.f, 2.f});
  auto f = [](const Tree& p, const Array& xs) {
    return jnp::sum(p.at("Dense_0/kernel").array() * xs) + jnp::sum(p.at("Dense_0/bias").array());
  };
  Tree g = grad(f)(params, x);
  CHECK(tree_structure(g) == tree_structure(params));
  CHECK(g["Dense_0"].keys() == strs({"kernel", "bias"}));
  const Array& dw = g.at("Dense_0/kernel").array();
  REQUIRE(dw.shape() == Shape{2, 3});
  std::vector<float> want_dw = {0.5f, -1.f, 2.f, 0.5f, -1.f, 2.f};
  CHECK(dw.to_float() == want_dw);
  CHECK(g.at("Dense_0/bias").array().to_float() == std::vector<float>{1.f, 1.f, 1.f});
  CHECK(g.at("Dense_0/kernel").array().node() == nullptr);  // detached

  auto [value, g2] = value_and_grad(f)(params, x);
  CHECK(value.item<float>() == doctest::Approx(0.5 * 5 - 7 + 2 * 9 + 3));
  CHECK(tree_equal(g, g2));
}
