// Tree (immutable, shared nodes) and TreeBuilder (mutable, for init). Utilities: tree_util.cpp.
#include "core/tree.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <unordered_map>

namespace flaxpp {

struct Tree::Node {
  bool leaf = false;
  Array array;
  std::vector<Item> items;       // insertion order
  std::vector<uint32_t> sorted;  // items' indices in byte-wise key order
};

namespace {

std::string where(std::string_view path) {
  return path.empty() ? std::string("<root>") : "'" + std::string(path) + "'";
}

void check_key(std::string_view key, const char* what) {
  if (key.empty()) throw std::invalid_argument(std::string(what) + ": empty key");
  if (key.find('/') != std::string_view::npos)
    throw std::invalid_argument(std::string(what) + ": key '" + std::string(key) +
                                "' contains '/', which separates path components");
}

// Splits "a/b/c" into its keys; "" is the empty path (the root).
std::vector<std::string_view> split_path(std::string_view path, const char* what) {
  std::vector<std::string_view> parts;
  if (path.empty()) return parts;
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    std::string_view part = path.substr(start, slash == path.npos ? path.npos : slash - start);
    if (part.empty())
      throw std::invalid_argument(std::string(what) + ": empty key in path '" + std::string(path) +
                                  "'");
    parts.push_back(part);
    if (slash == path.npos) break;
    start = slash + 1;
  }
  return parts;
}

std::string join(const std::vector<std::string_view>& parts, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    if (i) s += '/';
    s += parts[i];
  }
  return s;
}

std::vector<uint32_t> sort_keys(const std::vector<Tree::Item>& items) {
  std::vector<uint32_t> idx(items.size());
  std::iota(idx.begin(), idx.end(), 0u);
  std::sort(idx.begin(), idx.end(),
            [&](uint32_t a, uint32_t b) { return items[a].first < items[b].first; });
  return idx;
}

}  // namespace

Tree::Tree() {
  static const std::shared_ptr<const Node> empty = std::make_shared<const Node>();
  node_ = empty;
}

Tree::Tree(Array leaf) {
  auto n = std::make_shared<Node>();
  n->leaf = true;
  n->array = std::move(leaf);
  node_ = std::move(n);
}

Tree::Tree(std::initializer_list<Item> items) : Tree(dict(std::vector<Item>(items))) {}

Tree Tree::dict(std::vector<Item> items) {
  auto n = std::make_shared<Node>();
  for (const auto& [k, v] : items) check_key(k, "Tree");
  n->sorted = sort_keys(items);
  for (size_t i = 1; i < n->sorted.size(); ++i)
    if (items[n->sorted[i]].first == items[n->sorted[i - 1]].first)
      throw std::invalid_argument("Tree: duplicate key '" + items[n->sorted[i]].first + "'");
  n->items = std::move(items);
  return Tree(std::shared_ptr<const Node>(std::move(n)));
}

Tree Tree::rebuild(const Tree& like, std::vector<Tree> values) {
  if (like.is_leaf() || values.size() != like.size())
    throw std::invalid_argument("Tree::rebuild: " + std::to_string(values.size()) +
                                " values for a dict of " + std::to_string(like.size()) + " keys");
  auto n = std::make_shared<Node>();
  n->items.reserve(values.size());
  for (size_t i = 0; i < values.size(); ++i)
    n->items.emplace_back(like.node_->items[i].first, std::move(values[i]));
  n->sorted = like.node_->sorted;
  return Tree(std::shared_ptr<const Node>(std::move(n)));
}

bool Tree::is_leaf() const { return node_->leaf; }

const Array& Tree::array() const {
  if (!node_->leaf)
    throw std::invalid_argument("Tree::array: this node is a dict with " + std::to_string(size()) +
                                " keys, not an array");
  return node_->array;
}

size_t Tree::size() const { return node_->items.size(); }

std::vector<std::string> Tree::keys() const {
  std::vector<std::string> k;
  k.reserve(size());
  for (const auto& it : node_->items) k.push_back(it.first);
  return k;
}

const std::vector<Tree::Item>& Tree::items() const { return node_->items; }
const std::vector<uint32_t>& Tree::sorted_index() const { return node_->sorted; }

const Tree* Tree::child(std::string_view key) const {
  const auto& items = node_->items;
  const auto& s = node_->sorted;
  if (items.size() <= 8) {  // small dicts (nearly all of them): a scan beats the search
    for (const auto& it : items)
      if (it.first == key) return &it.second;
    return nullptr;
  }
  auto pos = std::lower_bound(s.begin(), s.end(), key,
                              [&](uint32_t i, std::string_view k) { return items[i].first < k; });
  if (pos != s.end() && items[*pos].first == key) return &items[*pos].second;
  return nullptr;
}

namespace {
std::string key_list(const Tree& t) {
  std::string s;
  for (const auto& k : t.keys()) s += (s.empty() ? "" : ", ") + k;
  return "[" + s + "]";
}
}  // namespace

const Tree& Tree::operator[](std::string_view key) const {
  if (is_leaf())
    throw std::invalid_argument("Tree: cannot look up '" + std::string(key) + "' in an array");
  const Tree* c = child(key);
  if (!c)
    throw std::out_of_range("Tree: no key '" + std::string(key) + "' (keys: " + key_list(*this) +
                            ")");
  return *c;
}

const Tree* Tree::find(std::string_view path) const {
  const Tree* t = this;
  for (auto part : split_path(path, "Tree::find")) {
    if (t->is_leaf()) return nullptr;
    t = t->child(part);
    if (!t) return nullptr;
  }
  return t;
}

const Tree& Tree::at(std::string_view path) const {
  auto parts = split_path(path, "Tree::at");
  const Tree* t = this;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (t->is_leaf())
      throw std::out_of_range("Tree::at: no '" + std::string(path) + "': " + where(join(parts, i)) +
                              " is an array");
    const Tree* c = t->child(parts[i]);
    if (!c)
      throw std::out_of_range("Tree::at: no '" + std::string(path) + "': " + where(join(parts, i)) +
                              " has keys " + key_list(*t));
    t = c;
  }
  return *t;
}

namespace {

Tree set_rec(const Tree& t, const std::vector<std::string_view>& parts, size_t i,
             const Tree& value) {
  if (i == parts.size()) return value;
  if (t.is_leaf())
    throw std::invalid_argument("Tree::set: cannot set '" + join(parts, parts.size()) +
                                "': " + where(join(parts, i)) + " is an array");
  std::vector<Tree> values;
  values.reserve(t.size() + 1);
  bool found = false;
  for (const auto& [k, v] : t.items()) {
    if (k == parts[i]) {
      values.push_back(set_rec(v, parts, i + 1, value));
      found = true;
    } else {
      values.push_back(v);
    }
  }
  if (found) return Tree::rebuild(t, std::move(values));
  std::vector<Tree::Item> items = t.items();
  items.emplace_back(std::string(parts[i]), set_rec(Tree(), parts, i + 1, value));
  return Tree::dict(std::move(items));
}

Tree merge_rec(const Tree& a, const Tree& b) {
  if (a.is_leaf() || b.is_leaf()) return b;
  std::vector<Tree::Item> items = a.items();
  for (const auto& [k, v] : b.items()) {
    auto it = std::find_if(items.begin(), items.end(),
                           [&key = k](const auto& x) { return x.first == key; });
    if (it == items.end())
      items.emplace_back(k, v);
    else
      it->second = merge_rec(it->second, v);
  }
  return Tree::dict(std::move(items));
}

}  // namespace

Tree Tree::set(std::string_view path, Tree value) const {
  return set_rec(*this, split_path(path, "Tree::set"), 0, value);
}

Tree Tree::erase(std::string_view path) const {
  auto parts = split_path(path, "Tree::erase");
  if (parts.empty()) throw std::invalid_argument("Tree::erase: empty path");
  const Tree& parent = at(join(parts, parts.size() - 1));
  if (parent.is_leaf() || !parent.child(parts.back()))
    throw std::out_of_range("Tree::erase: no '" + std::string(path) + "'");
  std::vector<Item> items;
  for (const auto& it : parent.items())
    if (it.first != parts.back()) items.push_back(it);
  Tree erased = dict(std::move(items));
  if (parts.size() == 1) return erased;
  return set(join(parts, parts.size() - 1), erased);
}

Tree Tree::merge(const Tree& other) const { return merge_rec(*this, other); }

// ---- TreeBuilder ---------------------------------------------------------------------------

namespace {
struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
}  // namespace

struct TreeBuilder::Node {
  bool leaf = false;
  Array array;
  std::vector<std::pair<std::string, std::unique_ptr<Node>>> children;  // insertion order
  std::unordered_map<std::string, size_t, SvHash, std::equal_to<>> index;

  static std::unique_ptr<Node> from(const Tree& t, size_t& leaves) {
    auto n = std::make_unique<Node>();
    if (t.is_leaf()) {
      n->leaf = true;
      n->array = t.array();
      ++leaves;
      return n;
    }
    for (const auto& [k, v] : t.items()) {
      n->index.emplace(k, n->children.size());
      n->children.emplace_back(k, from(v, leaves));
    }
    return n;
  }
  size_t count_leaves() const {
    if (leaf) return 1;
    size_t c = 0;
    for (const auto& ch : children) c += ch.second->count_leaves();
    return c;
  }
  Tree build() const {
    if (leaf) return Tree(array);
    std::vector<Tree::Item> items;
    items.reserve(children.size());
    for (const auto& [k, v] : children) items.emplace_back(k, v->build());
    return Tree::dict(std::move(items));
  }
  const Node* find(std::string_view key) const {
    auto it = index.find(key);
    return it == index.end() ? nullptr : children[it->second].second.get();
  }
};

TreeBuilder::TreeBuilder() : root_(std::make_unique<Node>()) {}
TreeBuilder::TreeBuilder(const Tree& start) : root_(Node::from(start, num_leaves_)) {}
TreeBuilder::~TreeBuilder() = default;
TreeBuilder::TreeBuilder(TreeBuilder&&) noexcept = default;
TreeBuilder& TreeBuilder::operator=(TreeBuilder&&) noexcept = default;

TreeBuilder& TreeBuilder::set_parts(const std::vector<std::string_view>& parts, const Tree& value) {
  if (parts.empty()) {
    num_leaves_ = 0;
    root_ = Node::from(value, num_leaves_);
    return *this;
  }
  Node* n = root_.get();
  for (size_t i = 0; i < parts.size(); ++i) {
    if (n->leaf)
      throw std::invalid_argument("TreeBuilder::set: cannot set '" + join(parts, parts.size()) +
                                  "': " + where(join(parts, i)) + " is an array");
    auto it = n->index.find(parts[i]);
    if (it == n->index.end()) {
      check_key(parts[i], "TreeBuilder::set");
      n->index.emplace(std::string(parts[i]), n->children.size());
      n->children.emplace_back(std::string(parts[i]), std::make_unique<Node>());
      it = n->index.find(parts[i]);
    }
    auto& slot = n->children[it->second].second;
    if (i + 1 == parts.size()) {
      num_leaves_ -= slot->count_leaves();
      slot = Node::from(value, num_leaves_);
      break;
    }
    n = slot.get();
  }
  return *this;
}

TreeBuilder& TreeBuilder::set(std::string_view path, const Tree& value) {
  return set_parts(split_path(path, "TreeBuilder::set"), value);
}

TreeBuilder& TreeBuilder::set(const std::vector<std::string>& path, const Tree& value) {
  std::vector<std::string_view> parts(path.begin(), path.end());
  for (auto p : parts) check_key(p, "TreeBuilder::set");
  return set_parts(parts, value);
}

namespace {
template <class N>
const N* builder_find(const N* n, std::string_view path) {
  for (auto part : split_path(path, "TreeBuilder::find")) {
    if (n->leaf) return nullptr;
    n = n->find(part);
    if (!n) return nullptr;
  }
  return n;
}
}  // namespace

const Array* TreeBuilder::find(std::string_view path) const {
  const Node* n = builder_find(root_.get(), path);
  return n && n->leaf ? &n->array : nullptr;
}

bool TreeBuilder::contains(std::string_view path) const {
  return builder_find(root_.get(), path) != nullptr;
}

Tree TreeBuilder::build() const { return root_->build(); }

// ---- Differentiable<Tree> ------------------------------------------------------------------

void Differentiable<Tree>::flatten(const Tree& x, std::vector<Array>& out) {
  if (x.is_leaf()) {
    out.push_back(x.array());
    return;
  }
  for (uint32_t i : x.sorted_index()) flatten(x.items()[i].second, out);
}

Tree Differentiable<Tree>::unflatten(const Tree& like, const Array*& it) {
  if (like.is_leaf()) return Tree(*it++);
  std::vector<Tree> values(like.size());
  for (uint32_t i : like.sorted_index()) values[i] = unflatten(like.items()[i].second, it);
  return Tree::rebuild(like, std::move(values));
}

}  // namespace flaxpp
