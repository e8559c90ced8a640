// Flax's nn.tabulate (flax/linen/summary.py): the text of each call's inputs and outputs, and
// the box-drawn table Module::tabulate returns.
#include "nn/summary.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "core/format.hpp"

namespace flaxpp::nn::detail {

std::string describe(const Array& a) {
  std::string s = dtype_name(a.dtype());
  s += "[";
  for (size_t i = 0; i < a.ndim(); ++i) s += (i ? "," : "") + std::to_string(a.shape()[i]);
  return s + "]";
}

std::string describe(const std::vector<Array>& v) {
  std::string r;
  for (const auto& a : v) r += (r.empty() ? "" : "\n") + yaml_list_item(describe(a));
  return r;
}

// Shortest round-trip digits, with Python's ".0" on integral values (repr(2.0) == "2.0").
template <class F>
std::string float_repr(F v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  std::string s(buf, end);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}
std::string describe_float(double v) { return float_repr(v); }
std::string describe_float(float v) { return float_repr(v); }

std::string yaml_list_item(const std::string& s) {
  std::string r = "- ";
  for (char c : s) r += c == '\n' ? std::string("\n  ") : std::string(1, c);
  return r;
}

namespace {

std::string join(const std::vector<std::string>& parts, const std::string& sep = "/") {
  std::string r;
  for (size_t i = 0; i < parts.size(); ++i) r += (i ? sep : "") + parts[i];
  return r;
}

// Flax's _size_and_bytes_repr: "1,234 (4.9 KB)"; empty when there is nothing to count.
std::string size_and_bytes(int64_t count, int64_t bytes) {
  if (count == 0) return "";
  return format::with_commas(count) + " (" + format::bytes_repr(bytes) + ")";
}

size_t display_width(const std::string& s) {
  size_t w = 0;
  for (unsigned char c : s) w += (c & 0xC0) != 0x80;  // count UTF-8 code points
  return w;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string line;
  while (std::getline(ss, line)) out.push_back(line);
  if (out.empty()) out.push_back("");
  return out;
}

// A box-drawn table in the style of Flax's rich summary.
std::string render_table(const std::string& title, const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows,
                         const std::vector<std::string>& footer, const std::string& caption) {
  size_t nc = header.size();
  std::vector<size_t> w(nc, 0);
  auto widen = [&](const std::vector<std::string>& r) {
    for (size_t c = 0; c < nc; ++c)
      for (const auto& l : lines_of(r[c])) w[c] = std::max(w[c], display_width(l));
  };
  widen(header);
  for (const auto& r : rows) widen(r);
  widen(footer);
  auto rule = [&](const char* l, const char* m, const char* r, const char* h) {
    std::string s = l;
    for (size_t c = 0; c < nc; ++c) {
      for (size_t i = 0; i < w[c] + 2; ++i) s += h;
      s += c + 1 < nc ? m : r;
    }
    return s + "\n";
  };
  auto line = [&](const std::vector<std::string>& r, const char* v, bool right_align_footer) {
    std::vector<std::vector<std::string>> cells;
    size_t h = 1;
    for (const auto& c : r) {
      cells.push_back(lines_of(c));
      h = std::max(h, cells.back().size());
    }
    std::string s;
    for (size_t k = 0; k < h; ++k) {
      s += v;
      for (size_t c = 0; c < nc; ++c) {
        std::string t = k < cells[c].size() ? cells[c][k] : "";
        std::string pad(w[c] - display_width(t), ' ');
        s += " " + (right_align_footer && c + 2 == nc ? pad + t : t + pad) + " " + v;
      }
      s += "\n";
    }
    return s;
  };
  size_t total = 1;
  for (size_t c = 0; c < nc; ++c) total += w[c] + 3;
  auto centered = [&](const std::string& t) {
    size_t pad = total > display_width(t) ? (total - display_width(t)) / 2 : 0;
    return std::string(pad, ' ') + t + "\n";
  };
  std::string out = centered(title);
  out += rule("┏", "┳", "┓", "━");
  out += line(header, "┃", false);
  out += rule("┡", "╇", "┩", "━");
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i) out += rule("├", "┼", "┤", "─");
    out += line(rows[i], "│", false);
  }
  out += rule("├", "┼", "┤", "─");
  out += line(footer, "│", true);
  out += rule("└", "┴", "┘", "─");
  out += "\n" + centered(caption);
  return out;
}

}  // namespace

std::string summary_table(const std::string& root_type, const std::vector<SummaryRow>& calls,
                          const std::vector<std::pair<std::string, Array>>& variables) {
  // Parameters owned directly by each module path (Flax lists a module's own variables).
  std::map<std::vector<std::string>, std::vector<std::pair<std::string, Array>>> own;
  int64_t total_count = 0, total_bytes = 0;
  for (const auto& [key, value] : variables) {
    if (key.rfind("params/", 0) != 0) continue;
    std::vector<std::string> parts;
    std::stringstream ss(key.substr(7));
    std::string p;
    while (std::getline(ss, p, '/')) parts.push_back(p);
    std::string name = parts.back();
    parts.pop_back();
    own[parts].emplace_back(name, value);
    total_count += value.size();
    total_bytes += static_cast<int64_t>(value.nbytes());
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : calls) {
    std::string params;
    auto it = own.find(r.path);
    if (it != own.end()) {
      auto vars = it->second;
      std::sort(vars.begin(), vars.end(), [](auto& a, auto& b) { return a.first < b.first; });
      int64_t n = 0, b = 0;
      for (const auto& [name, v] : vars) {
        params += name + ": " + describe(v) + "\n";
        n += v.size();
        b += static_cast<int64_t>(v.nbytes());
      }
      params += "\n" + size_and_bytes(n, b);
    }
    rows.push_back({join(r.path), r.type_name, r.inputs, r.outputs, params});
  }
  return render_table(root_type + " Summary", {"path", "module", "inputs", "outputs", "params"},
                      rows, {"", "", "", "Total", size_and_bytes(total_count, total_bytes)},
                      "Total Parameters: " + size_and_bytes(total_count, total_bytes));
}

}  // namespace flaxpp::nn::detail
