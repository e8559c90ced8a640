// `flaxpp random OP`: JAX-exact random numbers printed as JSON (nested lists shaped like the
// array; floats in the shortest form that reads back to the same float32).
//
//   flaxpp random --seed 0 split --num 2                       # [[1797259609,2579123966],...]
//   flaxpp random --seed 0 --mode legacy --shape 3 uniform     # [0.9653214,0.31468165,0.63302994]
//   flaxpp random --key-data 0,42 --shape 2,3 truncated_normal --lower -2 --upper 2
#include <charconv>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "core/random.hpp"

namespace {

using flaxpp::Array;
using flaxpp::DType;
using flaxpp::Shape;
using flaxpp::cli::ArgError;
namespace rnd = flaxpp::random;

void print_scalar(std::ostream& os, const Array& a, int64_t i) {
  switch (a.dtype()) {
    case DType::float32: {
      float v = a.data<float>()[i];
      if (std::isnan(v)) {
        os << "NaN";
        return;
      }  // as Python's json module
      if (std::isinf(v)) {
        os << (v > 0 ? "Infinity" : "-Infinity");
        return;
      }
      char buf[32];
      auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;  // shortest round-trip float32
      os << std::string_view(buf, end - buf);
      return;
    }
    case DType::int32: os << a.data<int32_t>()[i]; return;
    case DType::uint32: os << a.data<uint32_t>()[i]; return;
    case DType::bool_: os << (a.data<uint8_t>()[i] ? "true" : "false"); return;
  }
}

// Nested JSON lists, row-major, shaped like `a`.
void print_json(std::ostream& os, const Array& a, size_t dim = 0, int64_t offset = 0) {
  if (dim == a.ndim()) return print_scalar(os, a, offset);
  int64_t stride = 1;
  for (size_t d = dim + 1; d < a.ndim(); ++d) stride *= a.shape()[d];
  os << '[';
  for (int64_t i = 0; i < a.shape()[dim]; ++i) {
    if (i) os << ',';
    print_json(os, a, dim + 1, offset + i * stride);
  }
  os << ']';
}

Array keys_array(const std::vector<rnd::Key>& keys) {
  std::vector<uint32_t> words;
  for (auto k : keys) words.push_back(k.k0), words.push_back(k.k1);
  return Array::from({static_cast<int64_t>(keys.size()), 2}, words);
}

int run_random(int argc, char** argv) {
  CLI::App app{"JAX-exact random numbers (jax.random, threefry2x32) printed as JSON.",
               "flaxpp random"};
  app.fallthrough();  // the key/mode/shape options may also follow the op
  app.require_subcommand(1);
  int64_t seed = 0;
  std::string key_text, mode = "partitionable", shape_text;
  auto* seed_opt = app.add_option("--seed", seed, "PRNGKey(seed), x64 off (default 0)");
  app.add_option("--key-data", key_text, "raw key words K0,K1 instead of a seed")
      ->excludes(seed_opt);
  app.add_option("--mode", mode, "threefry bit mode: partitionable (JAX >= 0.5) or legacy")
      ->check(CLI::IsMember({"partitionable", "legacy"}));
  app.add_option("--shape", shape_text, "output shape A,B,... (empty: a scalar)");

  app.add_subcommand("key", "the key's data [k0, k1]");
  auto* split = app.add_subcommand("split", "split(key, num): num keys");
  int64_t num = 2;
  split->add_option("--num", num, "number of keys")->check(CLI::NonNegativeNumber);
  auto* fold = app.add_subcommand("fold_in", "fold_in(key, data)");
  uint32_t data = 0;
  fold->add_option("--data", data, "uint32 to fold in")->required();
  auto* bits = app.add_subcommand("bits", "bits(key, shape): uint32 words");
  int bit_width = 32;
  bits->add_option("--bit-width", bit_width, "8, 16 or 32")->check(CLI::IsMember({8, 16, 32}));
  auto* uniform = app.add_subcommand("uniform", "uniform(key, shape, minval, maxval)");
  float minval = 0.f, maxval = 1.f;
  uniform->add_option("--minval", minval, "lower bound (inclusive)");
  uniform->add_option("--maxval", maxval, "upper bound (exclusive)");
  app.add_subcommand("normal", "normal(key, shape)");
  auto* trunc =
      app.add_subcommand("truncated_normal", "truncated_normal(key, lower, upper, shape)");
  float lower = -2.f, upper = 2.f;
  trunc->add_option("--lower", lower, "lower bound (default -2)");
  trunc->add_option("--upper", upper, "upper bound (default 2)");
  auto* bern = app.add_subcommand("bernoulli", "bernoulli(key, p, shape)");
  float p = 0.5f;
  bern->add_option("--p", p, "probability of true (default 0.5)");
  auto* randint = app.add_subcommand("randint", "randint(key, shape, minval, maxval): int32");
  int64_t imin = 0, imax = 0;
  randint->add_option("--minval", imin, "lower bound (inclusive)")->required();
  randint->add_option("--maxval", imax, "upper bound (exclusive)")->required();
  auto* perm = app.add_subcommand("permutation", "permutation(key, n): int32");
  int64_t n = 0;
  perm->add_option("--n", n, "length")->required()->check(CLI::NonNegativeNumber);
  const std::vector<std::pair<std::string, Array (*)(rnd::Key, const Shape&)>> simple = {
      {"exponential", rnd::exponential}, {"gumbel", rnd::gumbel}, {"laplace", rnd::laplace},
      {"logistic", rnd::logistic},       {"cauchy", rnd::cauchy}, {"rademacher", rnd::rademacher},
      {"maxwell", rnd::maxwell}};
  for (const auto& [name, fn] : simple) app.add_subcommand(name, name + "(key, shape)");

  CLI11_PARSE(app, argc, argv);

  rnd::ScopedBitsMode bits_mode(mode == "legacy" ? rnd::BitsMode::legacy
                                                 : rnd::BitsMode::partitionable);
  rnd::Key key = rnd::PRNGKey(seed);
  if (!key_text.empty()) {
    auto words = flaxpp::cli::split_list(key_text);
    if (words.size() != 2)
      throw ArgError("--key-data: needs two words K0,K1, got '" + key_text + "'");
    key = rnd::wrap_key_data(flaxpp::cli::parse_uint32("--key-data", words[0]),
                             flaxpp::cli::parse_uint32("--key-data", words[1]));
  }
  const Shape shape = flaxpp::cli::parse_shape("--shape", shape_text);
  const std::string op = app.get_subcommands().front()->get_name();

  auto draw = [&]() -> Array {
    Array out;
    if (op == "key")
      out = rnd::key_data(key);
    else if (op == "split")
      out = keys_array(rnd::split(key, num));
    else if (op == "fold_in")
      out = rnd::key_data(rnd::fold_in(key, data));
    else if (op == "bits")
      out = rnd::bits(key, shape, bit_width);
    else if (op == "uniform")
      out = rnd::uniform(key, shape, minval, maxval);
    else if (op == "normal")
      out = rnd::normal(key, shape);
    else if (op == "truncated_normal")
      out = rnd::truncated_normal(key, lower, upper, shape);
    else if (op == "bernoulli")
      out = rnd::bernoulli(key, p, shape);
    else if (op == "randint")
      out = rnd::randint(key, shape, imin, imax);
    else if (op == "permutation")
      out = rnd::permutation(key, n);
    else
      for (const auto& [name, fn] : simple)
        if (op == name) out = fn(key, shape);
    return out;
  };
  // A size the machine cannot hold is the fault of the argument that asked for it.
  const std::string size_arg = op == "split" ? "--num" : op == "permutation" ? "--n" : "--shape";
  Array out;
  try {
    out = draw();
  } catch (const flaxpp::AllocationError& e) {
    throw ArgError(size_arg + ": " + e.what());
  } catch (const std::invalid_argument& e) {  // a byte count past 2^63 names the shape
    if (std::string(e.what()).find(flaxpp::to_string(shape)) == std::string::npos) throw;
    throw ArgError(size_arg + ": " + e.what());
  }
  print_json(std::cout, out);
  std::cout << '\n';
  return 0;
}

flaxpp::cli::Register reg("random", "JAX-exact random numbers (keys, bits, samplers) as JSON",
                          run_random);

}  // namespace
