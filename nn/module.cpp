#include "nn/module.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace flaxpp::nn {
namespace detail {

// One module scope: its place in the tree and the state that persists across its calls.
struct Frame {
  std::vector<std::string> path;
  std::string type_name;
  // Per stream; continues across calls (under v2021 a re-opened child restarts: open_child).
  std::map<std::string, uint32_t> rng_counters;
  std::map<std::string, std::unique_ptr<Frame>> children;
  // Per call (reset whenever the module is called): names taken and autoname cursors.
  std::set<std::string> used;
  std::map<std::string, int> autonames;
};

struct Row {
  std::vector<std::string> path;
  std::string type_name, inputs, outputs;
};

struct Context {
  bool initializing = false;
  Compat compat = Compat::current;
  Rngs rngs;
  std::optional<std::set<std::string>> mutable_cols;  // nullopt: every collection (init)
  std::unordered_map<std::string, Array> existing;     // "collection/path/name" -> value
  std::vector<std::pair<std::string, Array>> existing_order;
  std::vector<std::pair<std::string, Array>> written;  // insertion order
  std::unordered_map<std::string, size_t> written_index;
  bool tabulate = false;
  std::vector<Row> rows;
  std::set<std::vector<std::string>> tabulated_paths;
  Frame root;

  bool is_mutable(const std::string& col) const {
    if (!mutable_cols) return col != "intermediates";
    return mutable_cols->count(col) > 0;
  }
  void write(const std::string& key, const Array& value) {
    auto it = written_index.find(key);
    if (it != written_index.end()) {
      written[it->second].second = value;
    } else {
      written_index[key] = written.size();
      written.emplace_back(key, value);
    }
  }
};

std::string demangle_type_name(const char* mangled) {
  int status = 0;
  char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string s = status == 0 && d ? d : mangled;
  std::free(d);
  // Drop template arguments and namespaces: "flaxpp::nn::Dense" -> "Dense".
  if (auto lt = s.find('<'); lt != std::string::npos) s = s.substr(0, lt);
  if (auto colon = s.rfind("::"); colon != std::string::npos) s = s.substr(colon + 2);
  return s;
}

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

std::string var_key(const std::string& collection, const Frame& f, const std::string& name) {
  std::string k = collection + "/";
  for (const auto& p : f.path) k += p + "/";
  return k + name;
}

// Python's f"{n:,}" on a run of digits: "1234567" -> "1,234,567".
std::string group_thousands(const std::string& digits) {
  std::string r;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) r += ',';
    r += digits[i];
  }
  return r;
}

std::string with_commas(int64_t n) { return group_thousands(std::to_string(n)); }

// Flax's _bytes_repr: decimal units with strict thresholds (1000 bytes is "1,000 B", 1001 is
// "1.0 KB") and ',' separators (f"{v:,.1f}": 999,999 bytes is "1,000.0 KB").
std::string bytes_repr(int64_t bytes) {
  auto one_decimal = [](double v, const char* unit) {
    char b[64];
    std::snprintf(b, sizeof b, "%.1f", v);
    std::string s = b;
    size_t dot = s.find('.');
    return group_thousands(s.substr(0, dot)) + s.substr(dot) + " " + unit;
  };
  if (bytes > 1000000000) return one_decimal(bytes / 1e9, "GB");
  if (bytes > 1000000) return one_decimal(bytes / 1e6, "MB");
  if (bytes > 1000) return one_decimal(bytes / 1e3, "KB");
  return with_commas(bytes) + " B";
}

// Flax's _size_and_bytes_repr: "1,234 (4.9 KB)"; empty when there is nothing to count.
std::string size_and_bytes(int64_t count, int64_t bytes) {
  if (count == 0) return "";
  return with_commas(count) + " (" + bytes_repr(bytes) + ")";
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

std::string make_table(const Context& ctx, const std::string& root_type) {
  // Parameters owned directly by each module path (Flax lists a module's own variables).
  std::map<std::vector<std::string>, std::vector<std::pair<std::string, Array>>> own;
  int64_t total_count = 0, total_bytes = 0;
  for (const auto& [key, value] : ctx.written) {
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
  for (const auto& r : ctx.rows) {
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
  return render_table(root_type + " Summary", {"path", "module", "inputs", "outputs", "params"}, rows,
                      {"", "", "", "Total", size_and_bytes(total_count, total_bytes)},
                      "Total Parameters: " + size_and_bytes(total_count, total_bytes));
}

}  // namespace

bool is_tabulating(const Context* ctx) { return ctx->tabulate; }

struct RunAccess {
  static size_t begin(Scope& s, Frame* f, std::string in) { return s.begin_call(f, std::move(in)); }
  static void end(Scope& s, size_t row, std::string out) { s.end_call(row, std::move(out)); }
};

RunResult run(const std::string& root_type, const Tree* variables, const RunOptions& options,
              bool initializing, const std::function<std::string(Scope&)>& body) {
  Context ctx;
  ctx.initializing = initializing;
  ctx.compat = options.compat.value_or(default_compat());
  ctx.rngs = options.rngs;
  ctx.tabulate = options.tabulate;
  if (!initializing) ctx.mutable_cols = std::set<std::string>();
  if (options.mutable_collections)
    ctx.mutable_cols = std::set<std::string>(options.mutable_collections->begin(), options.mutable_collections->end());
  if (variables) {
    if (variables->is_leaf())
      throw ModuleError(root_type + ": variables must be a dict of collections like {\"params\": ...}, got an array");
    for (auto& [path, value] : flatten_dict(*variables)) {
      ctx.existing.emplace(path, value);
      ctx.existing_order.emplace_back(path, value);
    }
  }
  ctx.root.type_name = root_type;
  random::ScopedBitsMode mode(bits_mode_of(ctx.compat));
  Scope root(&ctx, &ctx.root);
  size_t row = RunAccess::begin(root, &ctx.root, options.root_inputs);
  std::string outputs = body(root);
  RunAccess::end(root, row, std::move(outputs));
  RunResult result;
  if (initializing && !options.mutable_collections) {
    result.variables = unflatten_dict(ctx.written);
  } else {
    // The mutable collections: existing values (updated in place) then new ones.
    std::vector<std::pair<std::string, Array>> out;
    std::set<std::string> seen;
    auto collection_of = [](const std::string& k) { return k.substr(0, k.find('/')); };
    for (const auto& [k, v] : ctx.existing_order) {
      if (!ctx.is_mutable(collection_of(k))) continue;
      auto it = ctx.written_index.find(k);
      out.emplace_back(k, it != ctx.written_index.end() ? ctx.written[it->second].second : v);
      seen.insert(k);
    }
    for (const auto& [k, v] : ctx.written)
      if (!seen.count(k) && ctx.is_mutable(collection_of(k))) out.emplace_back(k, v);
    result.variables = unflatten_dict(out);
  }
  if (ctx.tabulate) result.table = make_table(ctx, root_type);
  return result;
}

}  // namespace detail

// ---- Scope ----------------------------------------------------------------------------------

std::string Scope::path() const {
  std::string r;
  for (size_t i = 0; i < frame_->path.size(); ++i) r += (i ? "/" : "") + frame_->path[i];
  return r;
}

const std::string& Scope::type_name() const { return frame_->type_name; }

std::string Scope::where() const {
  std::string p = path();
  return (p.empty() ? std::string("<root>") : p) + " (" + frame_->type_name + ")";
}

void Scope::fail(const std::string& message) const { throw ModuleError(where() + ": " + message); }

bool Scope::is_initializing() const { return ctx_->initializing; }
Compat Scope::compat() const { return ctx_->compat; }
bool Scope::has_rng(const std::string& stream) const { return ctx_->rngs.count(stream) > 0; }

random::Key Scope::make_rng(const std::string& stream) {
  auto it = ctx_->rngs.find(stream);
  if (it == ctx_->rngs.end())
    fail("needs the rng stream '" + stream + "', which was not provided (pass nn::Rngs{{\"" + stream +
         "\", key}} to " + (ctx_->initializing ? "init" : "apply") + ")");
  uint32_t counter = ++frame_->rng_counters[stream];
  return derive_key(ctx_->compat, it->second, frame_->path, counter);
}

Array Scope::param(const std::string& name, const Initializer& init, const Shape& shape, DType dtype) {
  if (name.empty() || name.find('/') != std::string::npos) fail("invalid parameter name '" + name + "'");
  if (!frame_->used.insert(name).second) fail("name '" + name + "' is used twice in this module");
  std::string key = detail::var_key("params", *frame_, name);
  auto check = [&](const Array& v, const char* where_from) {
    if (v.shape() != shape)
      fail("parameter '" + name + "' has shape " + to_string(v.shape()) + " in the " + where_from +
           "; the module expects " + to_string(shape));
    if (v.dtype() != dtype)
      fail("parameter '" + name + "' has dtype " + dtype_name(v.dtype()) + " in the " + where_from +
           "; the module expects " + dtype_name(dtype));
    return v;
  };
  if (auto it = ctx_->written_index.find(key); it != ctx_->written_index.end())
    return check(ctx_->written[it->second].second, "variables");
  if (auto it = ctx_->existing.find(key); it != ctx_->existing.end()) return check(it->second, "variables");
  if (!ctx_->is_mutable("params"))
    fail("parameter '" + name + "' is missing from the variables (expected at '" + key + "')");
  Array value = init(make_rng("params"), shape, dtype);
  check(value, "initializer's output");
  ctx_->write(key, value);
  return value;
}

Array Scope::variable(const std::string& collection, const std::string& name, const std::function<Array()>& init) {
  if (!frame_->used.insert(name).second) fail("name '" + name + "' is used twice in this module");
  std::string key = detail::var_key(collection, *frame_, name);
  if (auto it = ctx_->written_index.find(key); it != ctx_->written_index.end()) return ctx_->written[it->second].second;
  if (auto it = ctx_->existing.find(key); it != ctx_->existing.end()) return it->second;
  if (!ctx_->is_mutable(collection))
    fail("variable '" + key + "' is missing and collection '" + collection + "' is not mutable");
  Array v = init();
  ctx_->write(key, v);
  return v;
}

bool Scope::has_variable(const std::string& collection, const std::string& name) const {
  std::string key = detail::var_key(collection, *frame_, name);
  return ctx_->written_index.count(key) || ctx_->existing.count(key);
}

void Scope::put_variable(const std::string& collection, const std::string& name, const Array& value) {
  if (!ctx_->is_mutable(collection))
    fail("cannot write '" + name + "': collection '" + collection + "' is not mutable (pass nn::Mutable{\"" +
         collection + "\"} to apply)");
  ctx_->write(detail::var_key(collection, *frame_, name), value);
}

std::string Scope::autoname(const std::string& type_name) {
  int n = frame_->autonames[type_name]++;
  return type_name + "_" + std::to_string(n);
}

detail::Frame* Scope::open_child(const std::string& name, const std::string& type_name) {
  if (name.empty() || name.find('/') != std::string::npos) fail("invalid submodule name '" + name + "'");
  if (!frame_->used.insert(name).second) fail("name '" + name + "' is used twice in this module");
  auto& slot = frame_->children[name];
  if (!slot) {
    slot = std::make_unique<detail::Frame>();
    slot->path = frame_->path;
    slot->path.push_back(name);
  } else if (ctx_->compat == Compat::v2021) {
    // A child opened again by a later call of its parent (a compact submodule re-created):
    // Flax 0.3.4 pushes a fresh scope whose rng counters restart at 0; from 0.4.0 they continue
    // (flax-semantics §2.3). Calls through one handle reuse its frame and always continue.
    slot->rng_counters.clear();
  }
  slot->type_name = type_name;
  return slot.get();
}

size_t Scope::begin_call(detail::Frame* frame, std::string inputs) {
  frame->used.clear();
  frame->autonames.clear();
  if (!ctx_->tabulate || !ctx_->tabulated_paths.insert(frame->path).second) return SIZE_MAX;
  ctx_->rows.push_back({frame->path, frame->type_name, std::move(inputs), ""});
  return ctx_->rows.size() - 1;
}

void Scope::end_call(size_t row, std::string outputs) {
  if (row != SIZE_MAX) ctx_->rows[row].outputs = std::move(outputs);
}

}  // namespace flaxpp::nn
