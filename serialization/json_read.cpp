// JSON reader for state dicts (see serialization/serialization.hpp for the dtype rules). Numbers are
// parsed with std::from_chars; nlohmann unescapes keys that contain escapes.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <future>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "serialization/serialization.hpp"

namespace flaxpp {

namespace {

std::string shown(const std::string& path) { return path.empty() ? "<root>" : path; }

// Input quoted in a message, cut to 40 characters (a bad number can be megabytes of digits).
std::string excerpt(const char* from, const char* to) {
  constexpr ptrdiff_t kMax = 40;
  return to - from <= kMax ? std::string(from, to) : std::string(from, kMax) + "...";
}

// ---- reader --------------------------------------------------------------------------------

// One leaf as parsed: values as float64 (exact for every int32/uint32 and float32 value).
struct LeafValues {
  std::vector<int64_t> dims;  // -1 until the first list at that depth closes
  int rank = -1;              // -1 until a scalar or an empty list fixes it
  std::vector<double> values;
  bool any_float = false, any_bool = false, any_int = false;
  double int_min = 0, int_max = 0;
};

class JsonReader {
 public:
  explicit JsonReader(std::string_view text)
      : begin_(text.data()), p_(text.data()), end_(text.data() + text.size()) {}
  // A reader of [from, to) inside a text starting at `begin` (for line numbers).
  JsonReader(const char* begin, const char* from, const char* to)
      : begin_(begin), p_(from), end_(to) {}

  [[noreturn]] void fail(const std::string& msg) const {
    int line = 1, col = 1;
    for (const char* c = begin_; c < p_; ++c) {
      if (*c == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw SerializationError("from_json: line " + std::to_string(line) + ", column " +
                             std::to_string(col) + ": " + msg);
  }
  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  char peek() {
    ws();
    if (p_ == end_) fail("unexpected end of input");
    return *p_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "', found '" + *p_ + "'");
    ++p_;
  }
  bool at_end() {
    ws();
    return p_ == end_;
  }

  Tree value(const Tree* target, std::string& path, int depth = 0) {
    if (depth > 256) fail(shown(path) + ": nesting deeper than 256 levels");
    if (peek() != '{')
      return Tree(leaf(target && target->is_leaf() ? &target->array() : nullptr, path));
    ++p_;
    std::vector<Tree::Item> items;
    if (peek() == '}') {
      ++p_;
      return Tree();
    }
    while (true) {
      std::string k = key();
      if (k.empty() || k.find('/') != k.npos)
        fail(shown(path) + ": key '" + k + "' is empty or contains '/' (paths use '/')");
      expect(':');
      const Tree* sub = target && target->is_dict() ? target->find(k) : nullptr;
      size_t len = path.size();
      if (len) path += '/';
      path += k;
      Tree v = value(sub, path, depth + 1);
      path.resize(len);
      items.emplace_back(std::move(k), std::move(v));
      char c = peek();
      ++p_;
      if (c == '}') break;
      if (c != ',') fail(shown(path) + ": expected ',' or '}' in an object");
    }
    try {
      return Tree::dict(std::move(items));
    } catch (const std::invalid_argument& e) {
      fail(shown(path) + ": " + e.what());
    }
  }

 private:
  std::string key() {
    if (peek() != '"') fail("expected a string key");
    const char* start = p_++;
    bool escaped = false;
    while (p_ < end_ && *p_ != '"') {
      if (*p_ == '\\') {
        escaped = true;
        if (++p_ == end_) break;  // a trailing backslash: stop at end_, never past it
      }
      ++p_;
    }
    if (p_ >= end_) fail("unterminated string");
    ++p_;
    if (!escaped) return std::string(start + 1, p_ - 1);
    try {
      return nlohmann::json::parse(start, p_).get<std::string>();
    } catch (const nlohmann::json::exception& e) {
      fail(std::string("bad string escape: ") + e.what());
    }
  }

  void scalar(LeafValues& lv, const std::string& path) {
    char c = *p_;
    bool numeric = (c >= '0' && c <= '9') || (c == '-' && p_ + 1 < end_ && p_[1] != 'I');
    if (!numeric) return word(lv, path);
    bool is_float = false;
    const char* e = p_;
    for (; e < end_; ++e) {
      char d = *e;
      if ((d >= '0' && d <= '9') || d == '-') continue;
      if (d == '.' || d == 'e' || d == 'E' || d == '+') {
        is_float = true;
        continue;
      }
      break;
    }
    double v;
    std::from_chars_result r;
    if (is_float) {
      r = std::from_chars(p_, e, v);
    } else {
      int64_t i = 0;
      r = std::from_chars(p_, e, i);
      if (r.ec == std::errc::result_out_of_range)
        fail(shown(path) + ": integer " + excerpt(p_, e) + " out of range");
      v = static_cast<double>(i);
      if (!lv.any_int) lv.int_min = lv.int_max = v;
      lv.any_int = true;
      lv.int_min = std::min(lv.int_min, v);
      lv.int_max = std::max(lv.int_max, v);
    }
    if (r.ec != std::errc() || r.ptr != e)
      fail(shown(path) + ": bad number '" + excerpt(p_, e) + "'");
    p_ = e;
    lv.values.push_back(v);
    lv.any_float = lv.any_float || is_float;
  }

  // true / false, and Python's NaN / Infinity / -Infinity.
  void word(LeafValues& lv, const std::string& path) {
    static constexpr std::pair<std::string_view, double> kWords[] = {
        {"true", 1.0},
        {"false", 0.0},
        {"NaN", std::numeric_limits<double>::quiet_NaN()},
        {"Infinity", std::numeric_limits<double>::infinity()},
        {"-Infinity", -std::numeric_limits<double>::infinity()}};
    for (size_t i = 0; i < std::size(kWords); ++i) {
      auto [w, v] = kWords[i];
      if (static_cast<size_t>(end_ - p_) >= w.size() && std::string_view(p_, w.size()) == w) {
        p_ += w.size();
        (i < 2 ? lv.any_bool : lv.any_float) = true;
        lv.values.push_back(v);
        return;
      }
    }
    fail(shown(path) + ": expected a number, true, false, '[' or '{'");
  }

  [[noreturn]] void ragged(const std::string& path, size_t depth, const std::string& what) {
    fail(shown(path) + ": ragged nested list at depth " + std::to_string(depth) + ": " + what);
  }

  // A list at nesting depth `depth` (0 = outermost); p_ is on its '['.
  void list(LeafValues& lv, size_t depth, const std::string& path) {
    if (depth >= Shape::kMaxRank)  // also bounds the recursion on "[[[[..."
      fail(shown(path) + ": lists nested deeper than 8 levels (arrays have rank <= 8)");
    ++p_;
    if (lv.dims.size() <= depth) lv.dims.resize(depth + 1, -1);
    int64_t count = 0;
    if (peek() == ']') {
      ++p_;
      if (lv.rank == -1) lv.rank = static_cast<int>(depth) + 1;
      if (lv.rank != static_cast<int>(depth) + 1)
        ragged(path, depth, "an empty list beside non-empty ones");
    } else {
      count = elements(lv, depth, path);
    }
    set_dim(lv, depth, count, path);
  }

  void set_dim(LeafValues& lv, size_t depth, int64_t count, const std::string& path) {
    if (lv.dims[depth] == -1) lv.dims[depth] = count;
    if (lv.dims[depth] != count)
      ragged(path, depth,
             "lists of length " + std::to_string(lv.dims[depth]) + " and " + std::to_string(count));
  }

  // The elements of a non-empty list at `depth`, through its closing ']' (or up to end_, for
  // the first half of a split list). Returns their number.
  int64_t elements(LeafValues& lv, size_t depth, const std::string& path, bool half = false) {
    int64_t count = 0;
    while (true) {
      if (peek() == '[') {
        if (lv.rank != -1 && lv.rank <= static_cast<int>(depth) + 1)
          ragged(path, depth + 1, "a list where numbers were found");
        list(lv, depth + 1, path);
      } else {
        if (lv.rank != -1 && lv.rank != static_cast<int>(depth) + 1)
          ragged(path, depth + 1, "a number where lists were found");
        lv.rank = static_cast<int>(depth) + 1;
        scalar(lv, path);
      }
      ++count;
      if (half && at_end()) return count;
      char c = peek();
      ++p_;
      if (c == ']') return count;
      if (c != ',') fail(shown(path) + ": expected ',' or ']' in a list");
    }
  }

  // A big list (p_ on its '[') parsed by two threads, split at an outermost element boundary
  // near the middle. Returns false, having consumed nothing, when the list is small or anything
  // looks unusual; the one-thread parse then runs (and reports errors with exact positions).
  bool parallel_list(LeafValues& lv, const std::string& path, size_t expected) {
    constexpr ptrdiff_t kMinBytes = 1 << 22;
    const char* start = p_;
    if (end_ - start < kMinBytes) return false;
    int rank = 0;  // from the leading brackets: "[[[" -> 3
    for (const char* q = start; q < end_ && (*q == '[' || *q == ' ' || *q == '\n'); ++q)
      rank += *q == '[';
    // The matching ']', found with memchr (a bracket per row, not per number). Text that is not
    // a list of numbers makes a half fail below, and the one-thread parse takes over.
    const char* close = nullptr;
    int depth = 0;
    for (const char* q = start;;) {
      auto* rb = static_cast<const char*>(std::memchr(q, ']', static_cast<size_t>(end_ - q)));
      if (!rb) return false;
      for (const char* lb = q;
           (lb = static_cast<const char*>(std::memchr(lb, '[', static_cast<size_t>(rb - lb))));
           ++lb)
        ++depth;
      if (--depth == 0) {
        close = rb;
        break;
      }
      q = rb + 1;
    }
    if (!close || close - start < kMinBytes || rank < 1 || rank > int{Shape::kMaxRank})
      return false;
    // In a rectangular list of rank r, "]" * (r - 1) + "," only ends an outermost element.
    std::string sep(static_cast<size_t>(rank - 1), ']');
    sep += ',';
    const char* mid = std::search(start + (close - start) / 2, close, sep.begin(), sep.end());
    if (mid == close) return false;
    const char* comma = mid + rank - 1;
    struct Half {
      LeafValues lv;
      int64_t count = 0;
    };
    auto parse_half = [&](const char* from, const char* to) {
      JsonReader r(begin_, from, to);
      Half h;
      h.lv.values.reserve(std::min(expected / 2, static_cast<size_t>(to - from) / 2) + 1024);
      h.lv.dims.assign(1, -1);
      h.count = r.elements(h.lv, 0, path, /*half=*/true);
      if (!r.at_end()) r.fail("split list");
      return h;
    };
    Half a, b;
    try {
      auto second = std::async(std::launch::async, parse_half, comma + 1, close);
      a = parse_half(start + 1, comma);
      b = second.get();
    } catch (const SerializationError&) {
      return false;
    }
    if (a.lv.rank != rank || b.lv.rank != rank || a.lv.any_bool != b.lv.any_bool ||
        !std::equal(a.lv.dims.begin() + 1, a.lv.dims.end(), b.lv.dims.begin() + 1, b.lv.dims.end()))
      return false;
    lv.rank = rank;
    lv.dims = a.lv.dims;
    lv.dims[0] = a.count + b.count;
    lv.any_float = a.lv.any_float || b.lv.any_float;
    lv.any_bool = a.lv.any_bool;
    lv.any_int = a.lv.any_int || b.lv.any_int;
    lv.int_min = !a.lv.any_int   ? b.lv.int_min
                 : !b.lv.any_int ? a.lv.int_min
                                 : std::min(a.lv.int_min, b.lv.int_min);
    lv.int_max = !a.lv.any_int   ? b.lv.int_max
                 : !b.lv.any_int ? a.lv.int_max
                                 : std::max(a.lv.int_max, b.lv.int_max);
    lv.values = std::move(a.lv.values);
    lv.values.insert(lv.values.end(), b.lv.values.begin(), b.lv.values.end());
    p_ = close + 1;
    return true;
  }

  Array leaf(const Array* target, const std::string& path) {
    LeafValues lv;
    if (peek() == '[') {
      size_t expected = target ? static_cast<size_t>(target->size()) : 0;
      if (!parallel_list(lv, path, expected)) {
        // A number takes >= 2 characters with its separator: a short or corrupt file must not
        // reserve a big target's worth of values.
        lv.values.reserve(std::min(expected, static_cast<size_t>(end_ - p_) / 2 + 1));
        list(lv, 0, path);
      }
    } else {
      lv.rank = 0;
      scalar(lv, path);
    }
    Shape shape;
    for (int i = 0; i < lv.rank; ++i) shape.push_back(lv.dims[i]);
    if (lv.any_bool && (lv.any_float || lv.any_int))
      fail(shown(path) + ": a list mixing booleans and numbers");
    DType file = lv.any_bool ? DType::bool_ : lv.any_float ? DType::float32 : DType::int32;
    if (file == DType::int32 && lv.any_int && (lv.int_min < INT32_MIN || lv.int_max > INT32_MAX))
      file = DType::uint32;
    DType dt = file;
    if (target) {
      // Strict, as for msgpack: a float32 leaf needs float literals (Python writes 1.0, never
      // 1). Integer literals fit int32 or uint32 leaves (range-checked below).
      bool ok = target->dtype() == file ||
                (target->dtype() == DType::uint32 && file == DType::int32) ||
                (target->dtype() == DType::int32 && file == DType::uint32) || lv.values.empty();
      if (!ok)
        throw SerializationError("restore: " + shown(path) + ": dtype " + dtype_name(file) +
                                 " in file, " + dtype_name(target->dtype()) + " in target");
      dt = target->dtype();
      // An empty list stands for any shape with a 0 dimension: [] for (0, 3).
      if (numel(shape) == 0 && numel(target->shape()) == 0 && shape != target->shape()) {
        Shape prefix;
        for (int64_t d : target->shape()) {
          prefix.push_back(d);
          if (d == 0) break;
        }
        if (prefix == shape) shape = target->shape();
      }
    }
    if (dt == DType::int32 || dt == DType::uint32) {
      double lo = dt == DType::int32 ? INT32_MIN : 0,
             hi = dt == DType::int32 ? INT32_MAX : UINT32_MAX;
      if (lv.any_int && (lv.int_min < lo || lv.int_max > hi))
        fail(shown(path) + ": integer " +
             std::to_string(static_cast<int64_t>(lv.int_min < lo ? lv.int_min : lv.int_max)) +
             " out of range for " + dtype_name(dt));
    }
    Array a = Array::empty(shape, dt);
    const double* v = lv.values.data();
    size_t n = lv.values.size();
    switch (dt) {
      case DType::float32: {
        float* o = a.mutable_data<float>();
        for (size_t i = 0; i < n; ++i) o[i] = static_cast<float>(v[i]);
        break;
      }
      case DType::int32: {
        int32_t* o = a.mutable_data<int32_t>();
        for (size_t i = 0; i < n; ++i) o[i] = static_cast<int32_t>(v[i]);
        break;
      }
      case DType::uint32: {
        uint32_t* o = a.mutable_data<uint32_t>();
        for (size_t i = 0; i < n; ++i) o[i] = static_cast<uint32_t>(v[i]);
        break;
      }
      case DType::bool_: {
        uint8_t* o = a.mutable_data<uint8_t>();
        for (size_t i = 0; i < n; ++i) o[i] = v[i] != 0;
        break;
      }
    }
    return a;
  }

  const char* begin_;
  const char* p_;
  const char* end_;
};

Tree parse(std::string_view text, const Tree* target) {
  JsonReader r(text);
  std::string path;
  Tree t = r.value(target, path);
  if (!r.at_end()) r.fail("trailing characters after the tree");
  return t;
}

}  // namespace

Tree from_json(std::string_view text) { return parse(text, nullptr); }

Tree from_json(const Tree& target, std::string_view text, const RestoreOptions& opts) {
  return from_state_dict(target, parse(text, &target), opts);
}

}  // namespace flaxpp
