// JAX tree_util and Flax traverse_util over Tree (declared in core/tree.hpp).
#include <cmath>
#include <cstring>
#include <ostream>
#include <sstream>
#include <stdexcept>

#include "core/tree.hpp"

namespace flaxpp {

namespace {

std::string where(const std::string& path) { return path.empty() ? "<root>" : "'" + path + "'"; }

std::string describe(const Tree& t) {
  if (t.is_leaf()) return "an array";
  std::string s;
  for (uint32_t i : t.sorted_index()) s += (s.empty() ? "" : ", ") + t.items()[i].first;
  return "a dict with keys [" + s + "]";
}

// Python's repr of a str: single quotes unless the text has ' and no ".
std::string py_str(const std::string& s) {
  char q = (s.find('\'') != s.npos && s.find('"') == s.npos) ? '"' : '\'';
  std::string r(1, q);
  for (unsigned char c : s) {
    if (c == '\\' || c == q) {
      r += '\\';
      r += static_cast<char>(c);
    } else if (c == '\n') {
      r += "\\n";
    } else if (c == '\r') {
      r += "\\r";
    } else if (c == '\t') {
      r += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      r += buf;
    } else {
      r += static_cast<char>(c);
    }
  }
  return r + q;
}

}  // namespace

// ---- TreeDef -------------------------------------------------------------------------------

struct TreeDef::Node {
  bool leaf = false;
  size_t num_leaves = 0;
  std::vector<std::pair<std::string, TreeDef>> children;  // sorted by key
};

TreeDef::TreeDef() {
  static const std::shared_ptr<const Node> empty = std::make_shared<const Node>();
  node_ = empty;
}

size_t TreeDef::num_leaves() const { return node_->num_leaves; }

bool TreeDef::operator==(const TreeDef& o) const {
  if (node_ == o.node_) return true;
  if (node_->leaf != o.node_->leaf || node_->num_leaves != o.node_->num_leaves ||
      node_->children.size() != o.node_->children.size())
    return false;
  for (size_t i = 0; i < node_->children.size(); ++i)
    if (node_->children[i].first != o.node_->children[i].first ||
        !(node_->children[i].second == o.node_->children[i].second))
      return false;
  return true;
}

void TreeDef::write_str(std::string& out) const {
  if (node_->leaf) {
    out += '*';
    return;
  }
  out += '{';
  for (size_t i = 0; i < node_->children.size(); ++i) {
    out += (i ? ", " : "") + py_str(node_->children[i].first) + ": ";
    node_->children[i].second.write_str(out);
  }
  out += '}';
}

std::string TreeDef::str() const {
  std::string body;
  write_str(body);
  return "PyTreeDef(" + body + ")";
}

Tree TreeDef::unflatten(const std::vector<Array>& leaves) const {
  if (leaves.size() != num_leaves())
    throw std::invalid_argument("tree_unflatten: " + std::to_string(leaves.size()) +
                                " leaves for a structure with " + std::to_string(num_leaves()));
  size_t pos = 0;
  // Depth first, leaves taken in order (a recursive lambda passes itself as `self`).
  auto build = [&](auto& self, const TreeDef& d) -> Tree {
    if (d.node_->leaf) return Tree(leaves[pos++]);
    std::vector<Tree::Item> items;
    for (const auto& [k, v] : d.node_->children) items.emplace_back(k, self(self, v));
    return Tree::dict(std::move(items));
  };
  return build(build, *this);
}

TreeDef tree_structure(const Tree& t) {
  auto n = std::make_shared<TreeDef::Node>();
  if (t.is_leaf()) {
    n->leaf = true;
    n->num_leaves = 1;
  } else {
    for (uint32_t i : t.sorted_index()) {
      const auto& [k, v] = t.items()[i];
      TreeDef c = tree_structure(v);
      n->num_leaves += c.num_leaves();
      n->children.emplace_back(k, std::move(c));
    }
  }
  TreeDef d;
  d.node_ = std::move(n);
  return d;
}

std::vector<Array> tree_leaves(const Tree& t) { return leaves_of(t); }

std::pair<std::vector<Array>, TreeDef> tree_flatten(const Tree& t) {
  return {tree_leaves(t), tree_structure(t)};
}

// ---- tree_map ------------------------------------------------------------------------------

namespace tree_detail {

namespace {
Tree map_rec(const MapFn& fn, const std::vector<const Tree*>& trees, std::string& path,
             const char* what) {
  const Tree& first = *trees[0];
  for (size_t j = 1; j < trees.size(); ++j) {
    const Tree& o = *trees[j];
    bool same = first.is_leaf() == o.is_leaf() && first.size() == o.size();
    for (size_t i = 0; same && i < first.size(); ++i)
      same = o.find(first.items()[i].first) != nullptr;
    if (!same)
      throw std::invalid_argument(std::string(what) + ": tree structures differ at " + where(path) +
                                  ": " + describe(first) + " in tree 0, " + describe(o) +
                                  " in tree " + std::to_string(j));
  }
  if (first.is_leaf()) {
    std::vector<const Array*> leaves;
    for (const Tree* t : trees) leaves.push_back(&t->array());
    return Tree(fn(leaves, path));
  }
  std::vector<Tree> values(first.size());
  size_t len = path.size();
  for (uint32_t i : first.sorted_index()) {
    const std::string& key = first.items()[i].first;
    std::vector<const Tree*> sub;
    sub.push_back(&first.items()[i].second);
    for (size_t j = 1; j < trees.size(); ++j) sub.push_back(&(*trees[j])[key]);
    if (len) path += '/';
    path += key;
    values[i] = map_rec(fn, sub, path, what);
    path.resize(len);
  }
  return Tree::rebuild(first, std::move(values));
}
}  // namespace

Tree map(const MapFn& fn, const std::vector<const Tree*>& trees, const char* what) {
  std::string path;
  return map_rec(fn, trees, path, what);
}

void require_same_structure(const std::vector<const Tree*>& trees, const char* what) {
  map([](const std::vector<const Array*>& leaves, const std::string&) { return *leaves[0]; }, trees,
      what);
}

}  // namespace tree_detail

Tree tree_map(const std::function<Array(const std::vector<Array>&)>& fn,
              const std::vector<Tree>& trees) {
  if (trees.empty()) throw std::invalid_argument("tree_map: no trees");
  std::vector<const Tree*> ptrs;
  for (const auto& t : trees) ptrs.push_back(&t);
  return tree_detail::map(
      [&](const std::vector<const Array*>& l, const std::string&) {
        std::vector<Array> v;
        for (const Array* a : l) v.push_back(*a);
        return fn(v);
      },
      ptrs, "tree_map");
}

Tree tree_map_with_path(const std::function<Array(const std::string&, const Array&)>& fn,
                        const Tree& tree) {
  return tree_detail::map(
      [&](const std::vector<const Array*>& l, const std::string& path) { return fn(path, *l[0]); },
      {&tree}, "tree_map_with_path");
}

// ---- traverse_util, counting, comparison ---------------------------------------------------

std::vector<std::pair<std::string, Array>> flatten_dict(const Tree& tree, std::string_view sep) {
  std::vector<std::pair<std::string, Array>> out;
  // Depth first, in insertion order (a recursive lambda passes itself as `self`).
  auto visit = [&](auto& self, const Tree& t, const std::string& path) -> void {
    if (t.is_leaf()) {
      out.emplace_back(path, t.array());
      return;
    }
    for (const auto& [k, v] : t.items())
      self(self, v, path.empty() ? k : path + std::string(sep) + k);
  };
  visit(visit, tree, "");
  return out;
}

Tree unflatten_dict(const std::vector<std::pair<std::string, Array>>& flat, std::string_view sep) {
  if (sep.empty()) throw std::invalid_argument("unflatten_dict: empty separator");
  TreeBuilder b;
  for (const auto& [path, leaf] : flat) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
      size_t p = path.find(sep, start);
      parts.push_back(path.substr(start, p == path.npos ? path.npos : p - start));
      if (p == path.npos) break;
      start = p + sep.size();
    }
    if (flat.size() == 1 && path.empty()) return Tree(leaf);
    b.set(parts, leaf);
  }
  return b.build();
}

int64_t param_count(const Tree& t) {
  int64_t n = 0;
  for (const auto& a : tree_leaves(t)) n += a.size();
  return n;
}

int64_t param_bytes(const Tree& t) {
  int64_t n = 0;
  for (const auto& a : tree_leaves(t)) n += static_cast<int64_t>(a.nbytes());
  return n;
}

bool allclose(const Tree& a, const Tree& b, double rtol, double atol) {
  bool close = true;
  tree_detail::map(
      [&](const std::vector<const Array*>& l, const std::string&) {
        const Array &x = *l[0], &y = *l[1];
        if (!close || x.shape() != y.shape()) {
          close = false;
          return x;
        }
        auto xv = x.to_double(), yv = y.to_double();
        for (size_t i = 0; close && i < xv.size(); ++i) {
          if (xv[i] == yv[i]) continue;  // also equal infinities
          close = std::isfinite(xv[i]) && std::isfinite(yv[i]) &&
                  std::abs(xv[i] - yv[i]) <= atol + rtol * std::abs(yv[i]);
        }
        return x;
      },
      {&a, &b}, "allclose");
  return close;
}

bool tree_equal(const Tree& a, const Tree& b) {
  if (!(tree_structure(a) == tree_structure(b))) return false;
  bool equal = true;
  tree_detail::map(
      [&](const std::vector<const Array*>& l, const std::string&) {
        const Array &x = *l[0], &y = *l[1];
        equal = equal && x.shape() == y.shape() && x.dtype() == y.dtype() &&
                (x.nbytes() == 0 || std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0);
        return x;
      },
      {&a, &b}, "tree_equal");
  return equal;
}

// ---- printing ------------------------------------------------------------------------------

std::string tree_shapes(const Tree& t) {
  if (t.is_leaf()) {
    const Shape& s = t.array().shape();
    std::string r = "(";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + (s.size() == 1 ? ",)" : ")");
  }
  std::string r = "{";
  for (uint32_t i : t.sorted_index()) {
    const auto& [k, v] = t.items()[i];
    r += (r.size() > 1 ? ", " : "") + py_str(k) + ": " + tree_shapes(v);
  }
  return r + "}";
}

std::ostream& operator<<(std::ostream& os, const Tree& t) {
  if (t.is_leaf()) {
    const Array& a = t.array();
    os << dtype_name(a.dtype()) << '[';
    for (size_t i = 0; i < a.ndim(); ++i) os << (i ? "," : "") << a.shape()[i];
    return os << ']';
  }
  os << '{';
  bool first = true;
  for (const auto& [k, v] : t.items()) {
    os << (first ? "" : ", ") << py_str(k) << ": " << v;
    first = false;
  }
  return os << '}';
}

}  // namespace flaxpp
