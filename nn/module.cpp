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

struct Context {
  bool initializing = false;
  Compat compat = Compat::current;
  Rngs rngs;
  std::optional<std::set<std::string>> mutable_cols;  // nullopt: every collection (init)
  std::unordered_map<std::string, Array> existing;    // "collection/path/name" -> value
  std::vector<std::pair<std::string, Array>> existing_order;
  std::vector<std::pair<std::string, Array>> written;  // insertion order
  std::unordered_map<std::string, size_t> written_index;
  bool tabulate = false;
  std::vector<SummaryRow> rows;
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

namespace {

std::string var_key(const std::string& collection, const Frame& f, const std::string& name) {
  std::string k = collection + "/";
  for (const auto& p : f.path) k += p + "/";
  return k + name;
}

}  // namespace

bool is_tabulating(const Context* ctx) { return ctx->tabulate; }

// Scope's begin_call/end_call are private (a module cannot fake a call); run() opens and closes
// the root call through this friend.
struct RunAccess {
  static size_t begin(Scope& s, Frame* f, std::string in) { return s.begin_call(f, std::move(in)); }
  static void end(Scope& s, size_t row, std::string out) { s.end_call(row, std::move(out)); }
};

RunResult run(const std::string& root_type, const Tree* variables, const RunOptions& options,
              Mode mode, const std::function<std::string(Scope&)>& body) {
  const bool initializing = mode == Mode::init;
  Context ctx;
  ctx.initializing = initializing;
  ctx.compat = options.compat.value_or(default_compat());
  ctx.rngs = options.rngs;
  ctx.tabulate = options.tabulate;
  if (!initializing) ctx.mutable_cols = std::set<std::string>();
  if (options.mutable_collections)
    ctx.mutable_cols = std::set<std::string>(options.mutable_collections->begin(),
                                             options.mutable_collections->end());
  if (variables) {
    if (variables->is_leaf())
      throw ModuleError(
          root_type +
          ": variables must be a dict of collections like {\"params\": ...}, got an array");
    for (auto& [path, value] : flatten_dict(*variables)) {
      ctx.existing.emplace(path, value);
      ctx.existing_order.emplace_back(path, value);
    }
  }
  ctx.root.type_name = root_type;
  random::ScopedBitsMode bits(bits_mode_of(ctx.compat));
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
  if (ctx.tabulate) result.table = summary_table(root_type, ctx.rows, ctx.written);
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
    fail("needs the rng stream '" + stream + "', which was not provided (pass nn::Rngs{{\"" +
         stream + "\", key}} to " + (ctx_->initializing ? "init" : "apply") + ")");
  uint32_t counter = ++frame_->rng_counters[stream];
  return derive_key(ctx_->compat, it->second, frame_->path, counter);
}

Array Scope::param(const std::string& name, const Initializer& init, const Shape& shape,
                   DType dtype) {
  if (name.empty() || name.find('/') != std::string::npos)
    fail("invalid parameter name '" + name + "'");
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
  if (auto it = ctx_->existing.find(key); it != ctx_->existing.end())
    return check(it->second, "variables");
  if (!ctx_->is_mutable("params"))
    fail("parameter '" + name + "' is missing from the variables (expected at '" + key + "')");
  Array value = init(make_rng("params"), shape, dtype);
  check(value, "initializer's output");
  ctx_->write(key, value);
  return value;
}

Array Scope::variable(const std::string& collection, const std::string& name,
                      const std::function<Array()>& init) {
  if (!frame_->used.insert(name).second) fail("name '" + name + "' is used twice in this module");
  std::string key = detail::var_key(collection, *frame_, name);
  if (auto it = ctx_->written_index.find(key); it != ctx_->written_index.end())
    return ctx_->written[it->second].second;
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

void Scope::put_variable(const std::string& collection, const std::string& name,
                         const Array& value) {
  if (!ctx_->is_mutable(collection))
    fail("cannot write '" + name + "': collection '" + collection +
         "' is not mutable (pass nn::Mutable{\"" + collection + "\"} to apply)");
  ctx_->write(detail::var_key(collection, *frame_, name), value);
}

std::string Scope::autoname(const std::string& type_name) {
  int n = frame_->autonames[type_name]++;
  return type_name + "_" + std::to_string(n);
}

detail::Frame* Scope::open_child(const std::string& name, const std::string& type_name) {
  if (name.empty() || name.find('/') != std::string::npos)
    fail("invalid submodule name '" + name + "'");
  if (!frame_->used.insert(name).second) fail("name '" + name + "' is used twice in this module");
  auto& slot = frame_->children[name];
  if (!slot) {
    slot = std::make_unique<detail::Frame>();
    slot->path = frame_->path;
    slot->path.push_back(name);
  } else if (ctx_->compat == Compat::v2021) {
    // A child opened again by a later call of its parent (a compact submodule re-created):
    // Flax 0.3.4 pushes a fresh scope whose rng counters restart at 0; from 0.4.0 they continue
    // (Flax 0.3.4 scope.py vs 0.4 module.py). Calls through one handle reuse its frame and
    // always continue.
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
