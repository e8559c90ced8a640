// `flaxpp inspect FILE` and `flaxpp convert IN OUT`: look into and convert checkpoints
// (.msgpack as flax.serialization.to_bytes writes it, .json as a nested-list state dict,
// .safetensors as Hugging Face's safetensors writes it, keys joined with '.').
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "core/format.hpp"
#include "serialization/serialization.hpp"

namespace {

using namespace flaxpp;

using format::bytes_repr;
using format::with_commas;

int run_inspect(int argc, char** argv) {
  CLI::App app{
      "Lists every array in a .msgpack, .json or .safetensors checkpoint: '/'-path, "
      "dtype, shape, element count and bytes, then the totals (Flax tabulate's units); a "
      "safetensors file's __metadata__ first.",
      "flaxpp inspect"};
  std::string file;
  bool sorted = false;
  app.add_option("FILE", file, "a .msgpack, .json or .safetensors checkpoint")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_flag("--sorted", sorted, "list paths in JAX's tree_leaves order (default: file order)");
  CLI11_PARSE(app, argc, argv);

  const Format format = format_of(file);
  std::map<std::string, std::string> metadata;
  Tree t;
  if (format == Format::safetensors) {
    Safetensors st = load_safetensors(file);
    t = std::move(st.tree);
    metadata = std::move(st.metadata);
  } else {
    t = load(file);
  }
  std::vector<std::pair<std::string, Array>> flat;
  if (sorted)  // tree_map_with_path visits leaves in tree_leaves' order (keys sorted per level)
    tree_map_with_path(
        [&](const std::string& path, const Array& a) {
          flat.emplace_back(path, a);
          return a;
        },
        t);
  else
    flat = flatten_dict(t);
  struct Row {
    std::string path, dtype, shape, count, bytes;
  };
  std::vector<Row> rows;
  size_t w[5] = {4, 5, 5, 6, 5};  // header widths: path dtype shape params bytes
  for (const auto& [path, a] : flat) {
    Row r{path.empty() ? "<root>" : path, dtype_name(a.dtype()), to_string(a.shape()),
          with_commas(a.size()), bytes_repr(static_cast<int64_t>(a.nbytes()))};
    w[0] = std::max(w[0], r.path.size());
    w[1] = std::max(w[1], r.dtype.size());
    w[2] = std::max(w[2], r.shape.size());
    w[3] = std::max(w[3], r.count.size());
    w[4] = std::max(w[4], r.bytes.size());
    rows.push_back(std::move(r));
  }
  auto line = [&](const std::string& a, const std::string& b, const std::string& c,
                  const std::string& d, const std::string& e) {
    std::printf("%-*s  %-*s  %-*s  %*s  %*s\n", static_cast<int>(w[0]), a.c_str(),
                static_cast<int>(w[1]), b.c_str(), static_cast<int>(w[2]), c.c_str(),
                static_cast<int>(w[3]), d.c_str(), static_cast<int>(w[4]), e.c_str());
  };
  std::printf("%s: %s, %s bytes\n", file.c_str(),
              format == Format::json      ? "JSON"
              : format == Format::msgpack ? "Flax msgpack"
                                          : "safetensors",
              with_commas(static_cast<int64_t>(std::filesystem::file_size(file))).c_str());
  for (const auto& [k, v] : metadata) std::printf("__metadata__ %s: %s\n", k.c_str(), v.c_str());
  line("path", "dtype", "shape", "params", "bytes");
  for (const auto& r : rows) line(r.path, r.dtype, r.shape, r.count, r.bytes);
  int64_t bytes = param_bytes(t);
  std::printf("Total Parameters: %s (%s) in %zu arrays\n", with_commas(param_count(t)).c_str(),
              bytes_repr(bytes).c_str(), flat.size());
  return 0;
}

int run_convert(int argc, char** argv) {
  CLI::App app{
      "Converts a checkpoint between Flax msgpack, JSON and safetensors, by extension "
      "(.msgpack / .json / .safetensors; safetensors keys are joined with '.'). Keys keep "
      "the input's order (safetensors has none: its data's order). Dtypes JSON cannot "
      "show go into OUT.meta.",
      "flaxpp convert"};
  std::vector<std::string> files(2);
  SaveOptions opts;
  app.add_option("IN", files[0], "input checkpoint")->required()->check(CLI::ExistingFile);
  app.add_option("OUT", files[1], "output checkpoint")->required();
  app.add_flag("--sort-keys", opts.json.sort_keys, "write JSON in JAX's sorted key order");
  CLI11_PARSE(app, argc, argv);
  cli::refuse_same_file("OUT", files[1], "IN", files[0]);
  format_of(files[1]);  // fail on a bad output extension before reading the input
  Tree t = load(files[0]);
  save(files[1], t, opts);
  std::printf("%s -> %s: %s parameters in %zu arrays\n", files[0].c_str(), files[1].c_str(),
              with_commas(param_count(t)).c_str(), tree_leaves(t).size());
  return 0;
}

cli::Register inspect_cmd("inspect",
                          "list the arrays of a .msgpack / .json / .safetensors checkpoint",
                          run_inspect);
cli::Register convert_cmd("convert",
                          "convert a checkpoint between .msgpack, .json and .safetensors",
                          run_convert);

}  // namespace
