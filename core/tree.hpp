// flaxpp::Tree: an immutable nested dict of arrays (Flax's variables / FrozenDict, JAX's pytree).
//
//   Tree params{{"Dense_0", Tree{{"kernel", k}, {"bias", b}}}};      // insertion order kept
//   Tree vars{{"params", params}};
//   vars["params"]["Dense_0"]["kernel"].array();  vars.at("params/Dense_0/kernel").array();
//   Tree v2 = vars.set("params/Dense_1/bias", b2);   // new tree; `vars` unchanged, subtrees shared
//   Tree v3 = v2.erase("params/Dense_0");  Tree v4 = v2.merge(Tree{{"batch_stats", stats}});
//   vars.keys() == {"params"};  vars.contains("params/Dense_0/bias");  vars.is_leaf() == false
//
//   Tree scaled = tree_map([](const Array& x) { return x * 2.f; }, params);
//   Tree summed = tree_map([](const Array& a, const Array& b) { return a + b; }, p1, p2);
//   tree_leaves(params);           // sorted key order: Dense_0/bias, Dense_0/kernel
//   tree_shapes(vars) == "{'params': {'Dense_0': {'bias': (3,), 'kernel': (4, 3)}}}"
//   std::cout << vars;             // {'params': {'Dense_0': {'kernel': float32[4,3], 'bias': float32[3]}}}
//   auto g = grad(loss)(params, batch);   // a Tree with params' structure (Differentiable<Tree>)
//
// A node is either a leaf (an Array) or a dict from string keys to nodes. Keys must be non-empty
// and must not contain '/', so every node has one '/'-joined path ("params/Dense_0/kernel"; the
// root is ""). Copies are O(1): nodes are immutable and shared; "updating" copies only the dicts
// on the path to the change. Being immutable, trees can be shared between threads freely.
//
// Two orders, as in Flax + JAX:
// - insertion order (the order keys were first added) is kept by keys(), items(), printing,
//   flatten_dict, JSON and msgpack, like a Python dict. Flax's init writes params in call order
//   (Dense: kernel, then bias), so a checkpoint lists them that way.
// - traversals that JAX's tree_util does (tree_leaves, tree_flatten, tree_map's call order,
//   tree_structure, grad's leaf order) visit keys sorted byte-wise (std::string operator<), as
//   JAX sorts dict keys: "bias" < "kernel", "layers_10" < "layers_2". tree_map's *result* keeps
//   the first tree's insertion order (JAX would rebuild sorted dicts; values are the same).
//
// Errors: looking up a missing key or path throws std::out_of_range naming the path and the keys
// present; array() on a dict, an invalid key, or mismatched structures in tree_map / allclose
// throw std::invalid_argument naming the '/'-path.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "array.hpp"
#include "autodiff.hpp"

namespace flaxpp {

class Tree {
 public:
  using Item = std::pair<std::string, Tree>;

  Tree();                                     // an empty dict
  Tree(Array leaf);                           // NOLINT: a leaf, so {"kernel", k} reads naturally
  Tree(std::initializer_list<Item> items);    // a dict; duplicate or invalid keys throw
  static Tree dict(std::vector<Item> items);  // same, from a vector

  bool is_leaf() const;
  bool is_dict() const { return !is_leaf(); }
  const Array& array() const;                 // the leaf; throws on a dict
  size_t size() const;                        // number of keys (0 for a leaf)
  bool empty() const { return size() == 0; }  // also true for a leaf
  std::vector<std::string> keys() const;      // insertion order
  const std::vector<Item>& items() const;     // insertion order (empty for a leaf)

  const Tree& operator[](std::string_view key) const;  // one key; throws std::out_of_range
  const Tree& at(std::string_view path) const;         // '/'-path; "" is the tree itself
  const Tree* find(std::string_view path) const;       // nullptr when absent
  bool contains(std::string_view path) const { return find(path) != nullptr; }

  // Returns a new tree with `value` at `path`, creating missing dicts on the way; an existing
  // key keeps its position. Throws if a prefix of the path is a leaf.
  Tree set(std::string_view path, Tree value) const;
  // Returns a new tree without `path` (its parent dict stays, possibly empty). Throws if absent.
  Tree erase(std::string_view path) const;
  // Deep merge: dicts merge key by key, anything else from `other` replaces. New keys are
  // appended in `other`'s order.
  Tree merge(const Tree& other) const;

  // A dict with `like`'s keys (same order) and these values, in `like`'s insertion order: the
  // cheap way to rebuild a structure (no key validation or sorting). Sizes must match.
  static Tree rebuild(const Tree& like, std::vector<Tree> values);
  // The position of each key in sorted order (for sorted traversals); empty for a leaf.
  const std::vector<uint32_t>& sorted_index() const;
  bool shares_structure_with(const Tree& o) const { return node_ == o.node_; }

 private:
  struct Node;
  explicit Tree(std::shared_ptr<const Node> node) : node_(std::move(node)) {}
  const Tree* child(std::string_view key) const;
  std::shared_ptr<const Node> node_;
  friend class TreeBuilder;
};

// Prints the tree on one line in insertion order with leaves as dtype[shape] (tabulate's form):
// {'params': {'kernel': float32[4,3], 'bias': float32[3]}}; a leaf root prints as float32[4,3].
std::ostream& operator<<(std::ostream& os, const Tree& t);

// A mutable builder for the module system's init, which adds thousands of params one at a time
// (O(path length) per set, hashed lookups). Insertion order is the order of first set; setting
// an existing path replaces the leaf in place. build() freezes a Tree in O(size) and leaves the
// builder usable; leaves are shared, not copied.
//
//   TreeBuilder b;
//   b.set("params/Dense_0/kernel", k).set("params/Dense_0/bias", bias);
//   b.set({"params", "Dense_1", "kernel"}, k2);     // path as parts (scope path + name)
//   Tree vars = b.build();
class TreeBuilder {
 public:
  TreeBuilder();
  explicit TreeBuilder(const Tree& start);  // continue from an existing tree
  ~TreeBuilder();
  TreeBuilder(TreeBuilder&&) noexcept;
  TreeBuilder& operator=(TreeBuilder&&) noexcept;

  TreeBuilder& set(std::string_view path, const Tree& value);
  TreeBuilder& set(const std::vector<std::string>& path, const Tree& value);
  const Array* find(std::string_view path) const;  // the leaf at path, or nullptr
  bool contains(std::string_view path) const;      // a leaf or dict at path
  size_t num_leaves() const { return num_leaves_; }
  Tree build() const;

 private:
  struct Node;
  TreeBuilder& set_parts(const std::vector<std::string_view>& parts, const Tree& value);
  std::unique_ptr<Node> root_;
  size_t num_leaves_ = 0;
};

// ---- JAX tree_util -------------------------------------------------------------------------

// The structure of a tree without its leaves (jax.tree_util.PyTreeDef): keys at every level,
// sorted, and where the leaves are. Equal structures compare equal whatever the insertion order.
class TreeDef {
 public:
  TreeDef();  // the structure of an empty dict
  size_t num_leaves() const;
  std::string str() const;  // JAX's repr: PyTreeDef({'a': *, 'b': {'c': *}})
  bool operator==(const TreeDef& o) const;
  // Rebuilds a tree from leaves in sorted order (dicts are built sorted, as JAX does).
  Tree unflatten(const std::vector<Array>& leaves) const;

 private:
  struct Node;
  void write_str(std::string& out) const;
  friend TreeDef tree_structure(const Tree& t);
  std::shared_ptr<const Node> node_;
};

TreeDef tree_structure(const Tree& t);
std::vector<Array> tree_leaves(const Tree& t);  // sorted key order
std::pair<std::vector<Array>, TreeDef> tree_flatten(const Tree& t);
inline Tree tree_unflatten(const TreeDef& def, const std::vector<Array>& leaves) {
  return def.unflatten(leaves);
}

namespace tree_detail {
// fn(leaves of all trees at one path, that path) -> new leaf. Trees must have equal key sets at
// every level; the result follows trees[0]'s insertion order; fn is called in sorted order.
using MapFn = std::function<Array(const std::vector<const Array*>&, const std::string& path)>;
Tree map(const MapFn& fn, const std::vector<const Tree*>& trees, const char* what);
// Throws map's error ("<what>: tree structures differ at <path>: ...") unless all trees have
// equal key sets at every level.
void require_same_structure(const std::vector<const Tree*>& trees, const char* what);
}  // namespace tree_detail

// jax.tree_util.tree_map(fn, tree, *rest): fn(leaf, leaf_of_rest...) -> Array for each leaf.
template <class Fn, class... Rest>
requires(std::same_as<Rest, Tree>&&...) Tree
    tree_map(Fn&& fn, const Tree& tree, const Rest&... rest) {
  return tree_detail::map(
      [&fn](const std::vector<const Array*>& l, const std::string&) -> Array {
        return [&]<size_t... I>(std::index_sequence<I...>)->Array {
          return fn(*l[0], *l[I + 1]...);
        }
        (std::index_sequence_for<Rest...>{});
      },
      {&tree, &rest...}, "tree_map");
}
// The vector form: fn gets one leaf per tree.
Tree tree_map(const std::function<Array(const std::vector<Array>&)>& fn,
              const std::vector<Tree>& trees);
// jax.tree_util.tree_map_with_path, with the path as a '/'-joined string.
Tree tree_map_with_path(const std::function<Array(const std::string& path, const Array&)>& fn,
                        const Tree& tree);

// ---- Flax traverse_util and counting idioms ------------------------------------------------

// flax.traverse_util.flatten_dict(tree, sep='/'): (path, leaf) in insertion order; empty dicts
// are dropped (Flax's keep_empty_nodes=False). A leaf root gives one entry with path "".
std::vector<std::pair<std::string, Array>> flatten_dict(const Tree& tree,
                                                        std::string_view sep = "/");
// The inverse: builds dicts in the given order. Throws on a path that is both leaf and dict.
Tree unflatten_dict(const std::vector<std::pair<std::string, Array>>& flat,
                    std::string_view sep = "/");

int64_t param_count(const Tree& t);  // sum(x.size for x in tree_leaves(t))
int64_t param_bytes(const Tree& t);  // sum(x.size * x.dtype.itemsize ...)

// numpy.allclose on every leaf pair: |a - b| <= atol + rtol * |b|, NaN never close. Leaves of
// different shapes are not close; different structures throw (naming the path).
bool allclose(const Tree& a, const Tree& b, double rtol = 1e-5, double atol = 1e-8);
// Same structure (key sets), shapes, dtypes and bit patterns; insertion order is not compared.
bool tree_equal(const Tree& a, const Tree& b);

// What Python prints for jax.tree_util.tree_map(jnp.shape, tree): sorted keys, Python tuples.
//   "{'params': {'Dense_0': {'bias': (3,), 'kernel': (4, 3)}}}"; a scalar leaf prints as ()
std::string tree_shapes(const Tree& t);

// ---- autodiff over trees: grad(f)(params, ...) returns a Tree shaped like params -----------
template <>
struct Differentiable<Tree> {
  static void flatten(const Tree& x, std::vector<Array>& out);  // sorted key order
  static Tree unflatten(const Tree& like, const Array*& it);
};

}  // namespace flaxpp
