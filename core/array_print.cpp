#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "core/array.hpp"

namespace flaxpp {

// ---- printing, after NumPy's array2string (floatmode 'maxprec', precision 8, linewidth 75,
// threshold 1000, edgeitems 3) and JAX's Array.__repr__ ---------------------------------------

namespace {

constexpr int kPrecision = 8;
constexpr int64_t kThreshold = 1000, kEdgeItems = 3;
constexpr size_t kLineWidth = 75;

// Shortest digits after the point (<= 8) that read back as v: Dragon4's unique mode with
// NumPy's precision cap.
int fixed_digits(float v) {
  char buf[64];
  for (int p = 0; p < kPrecision; ++p) {
    std::snprintf(buf, sizeof buf, "%.*f", p, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) return p;
  }
  return kPrecision;
}

// "1.", "0.25", "-3.5": positional, trailing zeros trimmed, the point kept.
std::string fixed_unique(float v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", fixed_digits(v), static_cast<double>(v));
  std::string s = buf;
  if (s.find('.') == std::string::npos) return s + ".";
  while (s.back() == '0') s.pop_back();
  return s;
}

// Scientific, shortest unique mantissa: {"1.5", "-05"} for 1.5e-05 ("1." when no digits).
std::pair<std::string, std::string> sci_unique(float v) {
  char buf[64];
  for (int p = 0; p <= kPrecision; ++p) {
    std::snprintf(buf, sizeof buf, "%.*e", p, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  std::string s = buf;
  size_t e = s.find('e');
  std::string mant = s.substr(0, e);
  if (mant.find('.') == std::string::npos) mant += ".";
  int ex = std::stoi(s.substr(e + 1));
  char eb[16];
  std::snprintf(eb, sizeof eb, "%c%02d", ex < 0 ? '-' : '+', std::abs(ex));
  return {mant, eb};
}

// Flat offsets of the elements that are shown (all, or the edges of each axis when summarising).
std::vector<int64_t> shown_offsets(const Shape& shape, bool summarise) {
  std::vector<int64_t> offs{0};
  Shape st = strides_of(shape);
  for (size_t d = 0; d < shape.size(); ++d) {
    std::vector<int64_t> idx;
    int64_t n = shape[d];
    for (int64_t i = 0; i < n; ++i)
      if (!summarise || n <= 2 * kEdgeItems || i < kEdgeItems || i >= n - kEdgeItems)
        idx.push_back(i);
    std::vector<int64_t> next;
    for (int64_t o : offs)
      for (int64_t i : idx) next.push_back(o + i * st[d]);
    offs.swap(next);
  }
  return offs;
}

// NumPy's FloatingFormat / IntegerFormat / BoolFormat, fitted to the shown elements.
struct Formatter {
  DType dtype;
  bool exp_format = false;
  size_t pad_left = 0, pad_right = 0;
  size_t exp_precision = 0;  // digits after the point in scientific mode
  size_t int_width = 0;
  bool scalar_bool = false;

  Formatter(const Array& a, const std::vector<int64_t>& shown) : dtype(a.dtype()) {
    if (dtype == DType::bool_) {
      scalar_bool = a.ndim() == 0;
    } else if (dtype == DType::int32 || dtype == DType::uint32) {
      for (int64_t o : shown) int_width = std::max(int_width, integer(a, o).size());
    } else {
      fit_floats(a.data<float>(), shown);
    }
  }

  void fit_floats(const float* p, const std::vector<int64_t>& shown) {
    float maxv = 0, minv = INFINITY;
    bool any_finite = false, any_nonfinite = false, neg_inf = false;
    for (int64_t o : shown) {
      float v = p[o];
      if (!std::isfinite(v)) {
        any_nonfinite = true;
        neg_inf = neg_inf || v == -INFINITY;
        continue;
      }
      any_finite = true;
      if (v != 0) maxv = std::max(maxv, std::fabs(v)), minv = std::min(minv, std::fabs(v));
    }
    if (minv != INFINITY)
      exp_format = maxv >= 1e8f || static_cast<double>(minv) < 1e-4 || maxv / minv > 1000.f;
    if (any_finite && exp_format) {
      size_t exp_size = 0;
      for (int64_t o : shown) {
        if (!std::isfinite(p[o])) continue;
        auto [mant, ex] = sci_unique(p[o]);
        size_t dot = mant.find('.');
        pad_left = std::max(pad_left, dot);
        exp_precision = std::max(exp_precision, mant.size() - dot - 1);
        exp_size = std::max(exp_size, ex.size() - 1);
      }
      pad_right = exp_size + 2 + exp_precision;
    } else if (any_finite) {
      for (int64_t o : shown) {
        if (!std::isfinite(p[o])) continue;
        std::string s = fixed_unique(p[o]);
        size_t dot = s.find('.');
        pad_left = std::max(pad_left, dot);
        pad_right = std::max(pad_right, s.size() - dot - 1);
      }
    }
    if (any_nonfinite) {
      size_t offset = pad_right + 1;
      size_t need = std::max<size_t>(3, 3 + (neg_inf ? 1 : 0));
      if (need > offset) pad_left = std::max(pad_left, need - offset);
    }
  }

  static std::string integer(const Array& a, int64_t o) {
    return a.dtype() == DType::int32 ? std::to_string(a.data<int32_t>()[o])
                                     : std::to_string(a.data<uint32_t>()[o]);
  }

  std::string operator()(const Array& a, int64_t o) const {
    switch (dtype) {
      case DType::bool_: return a.data<uint8_t>()[o] ? (scalar_bool ? "True" : " True") : "False";
      case DType::int32:
      case DType::uint32: {
        std::string s = integer(a, o);
        return std::string(int_width - std::min(int_width, s.size()), ' ') + s;
      }
      case DType::float32: break;
    }
    float v = a.data<float>()[o];
    if (!std::isfinite(v)) {
      std::string s = std::isnan(v) ? "nan" : v < 0 ? "-inf" : "inf";
      return std::string(pad_left + pad_right + 1 - std::min(pad_left + pad_right + 1, s.size()),
                         ' ') +
             s;
    }
    std::string s;
    size_t dot;
    if (exp_format) {
      auto [mant, ex] = sci_unique(v);
      dot = mant.find('.');
      mant.append(exp_precision - (mant.size() - dot - 1), '0');  // min_digits: pad with zeros
      s = mant + "e" + ex;
    } else {
      s = fixed_unique(v);
      dot = s.find('.');
      s.append(pad_right - (s.size() - dot - 1), ' ');
    }
    return std::string(pad_left - std::min(pad_left, dot), ' ') + s;
  }
};

std::string rstrip(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
  return s;
}

// NumPy's _formatArray: rows wrap at the line width, axes are separated by blank lines.
struct Printer {
  const Array& a;
  const Formatter& fmt;
  Shape strides;
  std::string separator;
  bool summarise;

  // The text of the sub-array at `axis` starting at element `offset`, numpy's recursive
  // _formatArray: `hanging` indents continuation lines, `width` is what is left of the line.
  std::string render(size_t axis, int64_t offset, const std::string& hanging, size_t width) const {
    size_t axes_left = a.ndim() - axis;
    if (axes_left == 0) return fmt(a, offset);
    std::string next_hanging = hanging + ' ';
    size_t next_width = width - 1;
    int64_t n = a.shape()[axis];
    bool show_summary = summarise && 2 * kEdgeItems < n;
    int64_t leading = show_summary ? kEdgeItems : 0, trailing = show_summary ? kEdgeItems : n;
    auto item = [&](int64_t i) {
      return render(axis + 1, offset + i * strides[axis], next_hanging, next_width);
    };
    std::string s;
    if (axes_left == 1) {
      size_t elem_width = width - std::max<size_t>(rstrip(separator).size(), 1);
      std::string line = hanging;
      auto extend = [&](const std::string& word) {
        bool wrap = line.size() + word.size() > elem_width && line.size() > hanging.size();
        if (wrap) {
          s += rstrip(line) + "\n";
          line = hanging;
        }
        line += word;
      };
      for (int64_t i = 0; i < leading; ++i) extend(item(i)), line += separator;
      if (show_summary) extend("..."), line += separator;
      for (int64_t i = trailing; i > 1; --i) extend(item(n - i)), line += separator;
      extend(item(n - 1));
      s += line;
    } else {
      std::string line_sep = rstrip(separator) + std::string(axes_left - 1, '\n');
      for (int64_t i = 0; i < leading; ++i) s += hanging + item(i) + line_sep;
      if (show_summary) s += hanging + "..." + line_sep;
      for (int64_t i = trailing; i > 1; --i) s += hanging + item(n - i) + line_sep;
      s += hanging + item(n - 1);
    }
    return "[" + s.substr(hanging.size()) + "]";
  }
};

// np.array2string(a, separator=sep, prefix=prefix, suffix=suffix) for a non-empty array.
std::string array2string(const Array& a, const std::string& sep, size_t prefix_len,
                         size_t suffix_len) {
  bool summarise = a.size() > kThreshold;
  Formatter fmt(a, shown_offsets(a.shape(), summarise));
  Printer p{a, fmt, strides_of(a.shape()), sep, summarise};
  return p.render(0, 0, std::string(prefix_len + 1, ' '), kLineWidth - suffix_len);
}

std::string python_tuple(const Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

}  // namespace

// JAX's Array.__repr__, including its spacing rule for a dtype that does not fit the last line.
std::string Array::repr() const {
  const std::string prefix = "Array(";
  std::string dtype_str = std::string("dtype=") + dtype_name(dtype_) + ")";
  std::string s = size() == 0 ? "[], shape=" + python_tuple(shape_)
                              : array2string(*this, ", ", prefix.size(), 1);
  size_t nl = s.rfind('\n');
  size_t last_line_len = nl == std::string::npos ? s.size() + 2 : s.size() - nl + 1;  // sic, as JAX
  std::string sep =
      last_line_len + dtype_str.size() + 1 > kLineWidth ? std::string(prefix.size(), ' ') : " ";
  return prefix + s + "," + sep + dtype_str;
}

// np.array_str: the body alone, elements separated by spaces ("[1. 2.]"); 0-d arrays print
// like the NumPy scalar ("1.0", "3", "True").
std::string Array::str() const {
  if (size() == 0) return "[]";
  if (ndim() == 0) {
    switch (dtype_) {
      case DType::bool_: return data<uint8_t>()[0] ? "True" : "False";
      case DType::int32: return std::to_string(data<int32_t>()[0]);
      case DType::uint32: return std::to_string(data<uint32_t>()[0]);
      case DType::float32: break;
    }
    float v = data<float>()[0];
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
    float m = std::fabs(v);
    if (m == 0 || (m >= 1e-4f && m < 1e16f)) {
      std::string s = fixed_unique(v);
      return s.back() == '.' ? s + "0" : s;
    }
    auto [mant, ex] = sci_unique(v);
    if (mant.back() == '.') mant.pop_back();
    return mant + "e" + ex;
  }
  return array2string(*this, " ", 0, 0);
}

std::ostream& operator<<(std::ostream& os, const Array& a) { return os << a.repr(); }

}  // namespace flaxpp
