// JSON state dicts as Python's json.dumps(tree_map(lambda x: np.asarray(x).tolist(), v)) writes
// them. Numbers are printed and parsed with std::to_chars / std::from_chars: nlohmann would
// build a json value per number (a 31M-parameter tree is ~650 MB of JSON). nlohmann is used for
// what it does well here: escaping and unescaping keys.
#include <charconv>
#include <cmath>
#include <cstring>
#include <future>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "core/serialization.hpp"

namespace flaxpp {

namespace {

std::string shown(const std::string& path) { return path.empty() ? "<root>" : path; }

// ---- writer --------------------------------------------------------------------------------

// Python's repr(float(x)): shortest round-trip digits; positional when the decimal exponent is
// in [-4, 16), else d.ddde+XX with at least two exponent digits; "1.0" keeps its ".0".
// `v` is finite. Writes at most 25 bytes.
char* py_float(double v, char* out) {
  if (v == 0) {
    if (std::signbit(v)) *out++ = '-';
    return std::copy_n("0.0", 3, out);
  }
  if (v < 0) {
    *out++ = '-';
    v = -v;
  }
  char sci[32];  // "d.ddddde-XX" or "de+XX"
  char* end = std::to_chars(sci, sci + sizeof sci, v, std::chars_format::scientific).ptr;
  char* e = end - 3;  // exponents have 2 or 3 digits
  if (*e != 'e') --e;
  int exp = 0;
  for (char* c = e + 2; c < end; ++c) exp = exp * 10 + (*c - '0');
  if (e[1] == '-') exp = -exp;
  // digits: sci[0], then sci[2..e) when there is a '.'
  const char* frac = sci + 2;
  int nfrac = e > sci + 1 ? static_cast<int>(e - frac) : 0;
  if (exp < -4 || exp >= 16) {
    out = std::copy(sci, e, out);
    *out++ = 'e';
    *out++ = exp < 0 ? '-' : '+';
    int a = exp < 0 ? -exp : exp;
    if (a >= 100) *out++ = static_cast<char>('0' + a / 100);
    *out++ = static_cast<char>('0' + a / 10 % 10);
    *out++ = static_cast<char>('0' + a % 10);
    return out;
  }
  if (exp < 0) {  // 0.000ddd
    *out++ = '0';
    *out++ = '.';
    for (int i = 1; i < -exp; ++i) *out++ = '0';
    *out++ = sci[0];
    return std::copy_n(frac, nfrac, out);
  }
  *out++ = sci[0];  // d[ddd][.ddd] with exp digits before the point
  if (nfrac <= exp) {
    out = std::copy_n(frac, nfrac, out);
    out = std::fill_n(out, exp - nfrac, '0');
    return std::copy_n(".0", 2, out);
  }
  out = std::copy_n(frac, exp, out);
  *out++ = '.';
  return std::copy_n(frac + exp, nfrac - exp, out);
}

class JsonWriter {
 public:
  JsonWriter(const ByteSink& sink, const JsonOptions& opts) : sink_(sink), opts_(opts) {
    buf_.resize(kBuf);
  }
  void flush() {
    if (n_) sink_(buf_.data(), n_);
    n_ = 0;
  }
  char* reserve(size_t k) {  // room for k more bytes
    if (n_ + k > buf_.size()) {
      flush();
      if (k > buf_.size()) buf_.resize(k);
    }
    return buf_.data() + n_;
  }
  void put(std::string_view s) {
    std::memcpy(reserve(s.size()), s.data(), s.size());
    n_ += s.size();
  }

  void node(const Tree& t, std::string& path) {
    if (t.is_leaf()) return leaf(t.array(), path);
    put("{");
    auto emit = [&](size_t i, bool first) {
      const auto& [k, v] = t.items()[i];
      if (!first) put(", ");
      try {
        put(nlohmann::json(k).dump(-1, ' ', /*ensure_ascii=*/true));
      } catch (const nlohmann::json::exception& e) {
        throw SerializationError("to_json: " + shown(path) +
                                 ": key is not valid UTF-8: " + e.what());
      }
      put(": ");
      size_t len = path.size();
      if (len) path += '/';
      path += k;
      node(v, path);
      path.resize(len);
    };
    for (size_t i = 0; i < t.size(); ++i) emit(opts_.sort_keys ? t.sorted_index()[i] : i, i == 0);
    put("}");
  }

 private:
  template <class T>
  char* number(T v, char* p, const std::string& path) {
    if constexpr (std::is_same_v<T, float>) {
      if (std::isfinite(v)) return py_float(static_cast<double>(v), p);
      if (!opts_.allow_nan)
        throw SerializationError("to_json: " + shown(path) + ": " +
                                 (std::isnan(v) ? "NaN" : "infinity") +
                                 " is not valid JSON (JsonOptions::allow_nan is false)");
      std::string_view s = std::isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
      return std::copy(s.begin(), s.end(), p);
    } else if constexpr (std::is_same_v<T, uint8_t>) {
      return v ? std::copy_n("true", 4, p) : std::copy_n("false", 5, p);
    } else {
      return std::to_chars(p, p + 16, v).ptr;
    }
  }
  template <class T>
  void rows(const T* data, const Shape& s, size_t axis, int64_t& pos, const std::string& path) {
    constexpr int64_t kMaxNumber = 27, kBlock = 4096;  // bytes per number incl. ", "; per reserve
    if (axis == s.size()) {
      char* p = reserve(kMaxNumber);
      n_ = number(data[pos++], p, path) - buf_.data();
      return;
    }
    put("[");
    if (axis + 1 == s.size()) {  // the innermost axis: a tight loop over one row
      for (int64_t i = 0; i < s[axis]; i += kBlock) {
        int64_t m = std::min(kBlock, s[axis] - i);
        char* p = reserve(static_cast<size_t>(m * kMaxNumber));
        for (int64_t j = 0; j < m; ++j) {
          if (i + j) {
            *p++ = ',';
            *p++ = ' ';
          }
          p = number(data[pos++], p, path);
        }
        n_ = p - buf_.data();
      }
    } else {
      for (int64_t i = 0; i < s[axis]; ++i) {
        if (i) put(", ");
        rows(data, s, axis + 1, pos, path);
      }
    }
    put("]");
  }
  void leaf(const Array& a, const std::string& path) {
    int64_t pos = 0;
    switch (a.dtype()) {
      case DType::float32:
        if (a.size() >= kParallel && a.shape()[0] >= 2)
          return parallel_rows(a.data<float>(), a.shape(), path);
        return rows(a.data<float>(), a.shape(), 0, pos, path);
      case DType::int32: return rows(a.data<int32_t>(), a.shape(), 0, pos, path);
      case DType::uint32: return rows(a.data<uint32_t>(), a.shape(), 0, pos, path);
      case DType::bool_: return rows(a.data<uint8_t>(), a.shape(), 0, pos, path);
    }
  }

  // Shortest-repr printing costs ~50 ns a number, so big float arrays are printed by two threads,
  // each taking half of a batch of leading-axis elements; text is emitted in order.
  static constexpr int64_t kParallel = 1 << 18, kBatchNumbers = 1 << 22;
  void parallel_rows(const float* data, const Shape& s, const std::string& path) {
    int64_t lead = s[0], per = numel(s) / lead;
    int64_t batch = std::max<int64_t>(2, kBatchNumbers / std::max<int64_t>(per, 1));
    auto work = [&](int64_t from, int64_t count) {
      std::string out;
      out.reserve(static_cast<size_t>(count * per) * 24);
      ByteSink to_out = [&](const char* p, size_t n) { out.append(p, n); };
      JsonWriter w(to_out, opts_);
      int64_t pos = from * per;
      for (int64_t i = 0; i < count; ++i) {
        if (i) w.put(", ");
        w.rows(data, s, 1, pos, path);
      }
      w.flush();
      return out;
    };
    put("[");
    for (int64_t b = 0; b < lead; b += batch) {
      int64_t m = std::min(batch, lead - b), half = (m + 1) / 2;
      auto second = std::async(std::launch::async, work, b + half, m - half);
      std::string first = work(b, half);
      std::string rest = second.get();
      if (b) put(", ");
      emit(first);
      if (!rest.empty()) {
        put(", ");
        emit(rest);
      }
    }
    put("]");
  }
  void emit(const std::string& big) {
    flush();
    sink_(big.data(), big.size());
  }

  static constexpr size_t kBuf = 1 << 20;
  const ByteSink& sink_;
  const JsonOptions& opts_;
  std::vector<char> buf_;
  size_t n_ = 0;
};

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
  JsonReader(std::string_view text)
      : begin_(text.data()), p_(text.data()), end_(text.data() + text.size()) {}

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
    if (depth > 256) fail("nesting deeper than 256 levels");
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
        fail(shown(path) + ": integer " + std::string(p_, e) + " out of range");
      v = static_cast<double>(i);
      if (!lv.any_int) lv.int_min = lv.int_max = v;
      lv.any_int = true;
      lv.int_min = std::min(lv.int_min, v);
      lv.int_max = std::max(lv.int_max, v);
    }
    if (r.ec != std::errc() || r.ptr != e)
      fail(shown(path) + ": bad number '" + std::string(p_, e) + "'");
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
        char c = peek();
        ++p_;
        if (c == ']') break;
        if (c != ',') fail(shown(path) + ": expected ',' or ']' in a list");
      }
    }
    if (lv.dims[depth] == -1) lv.dims[depth] = count;
    if (lv.dims[depth] != count)
      ragged(path, depth,
             "lists of length " + std::to_string(lv.dims[depth]) + " and " + std::to_string(count));
  }

  Array leaf(const Array* target, const std::string& path) {
    LeafValues lv;
    if (target) lv.values.reserve(static_cast<size_t>(target->size()));
    if (peek() == '[') {
      list(lv, 0, path);
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
      // Integers are fine for a float32 leaf; anything else must agree with the target.
      bool ok = target->dtype() == file ||
                (target->dtype() == DType::float32 && file != DType::bool_) ||
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

void write_json(const Tree& tree, const ByteSink& sink, const JsonOptions& opts) {
  JsonWriter w(sink, opts);
  std::string path;
  w.node(tree, path);
  w.flush();
}

std::string to_json(const Tree& tree, const JsonOptions& opts) {
  std::string out;
  write_json(
      tree, [&](const char* p, size_t n) { out.append(p, n); }, opts);
  return out;
}

Tree from_json(std::string_view text) { return parse(text, nullptr); }

Tree from_json(const Tree& target, std::string_view text, const RestoreOptions& opts) {
  return from_state_dict(target, parse(text, &target), opts);
}

}  // namespace flaxpp
