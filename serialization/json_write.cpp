// JSON writer: what Python's json.dumps(tree_map(lambda x: np.asarray(x).tolist(), v)) writes.
// Numbers are printed with std::to_chars (nlohmann would build a json value per number; a
// 31M-parameter tree is ~690 MB of JSON); nlohmann escapes the keys, as ensure_ascii does.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <functional>
#include <future>
#include <string>

#include <nlohmann/json.hpp>

#include "serialization/serialization.hpp"

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
    auto work = [&](int64_t from, int64_t count, std::string& out) {
      out.clear();
      ByteSink to_out = [&](const char* p, size_t n) { out.append(p, n); };
      JsonWriter w(to_out, opts_);
      int64_t pos = from * per;
      for (int64_t i = 0; i < count; ++i) {
        if (i) w.put(", ");
        w.rows(data, s, 1, pos, path);
      }
      w.flush();
    };
    put("[");
    for (int64_t b = 0; b < lead; b += batch) {
      int64_t m = std::min(batch, lead - b), half = (m + 1) / 2;
      auto second = std::async(std::launch::async, work, b + half, m - half, std::ref(text_[1]));
      work(b, half, text_[0]);
      second.get();
      if (b) put(", ");
      emit(text_[0]);
      if (!text_[1].empty()) {
        put(", ");
        emit(text_[1]);
      }
    }
    put("]");
  }
  void emit(const std::string& big) {
    flush();
    sink_(big.data(), big.size());
  }

  static constexpr size_t kBuf = 1 << 20;
  std::string text_[2];  // the two threads' text, kept across batches and leaves (fresh pages
                         // cost more than the copy)
  const ByteSink& sink_;
  const JsonOptions& opts_;
  std::vector<char> buf_;
  size_t n_ = 0;
};

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

}  // namespace flaxpp
