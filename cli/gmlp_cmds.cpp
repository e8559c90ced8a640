// `flaxpp init gmlp` and `flaxpp apply gmlp`: make and run gMLP parameter files in Flax's layout.
//
//   flaxpp init gmlp --num-tokens 256 --dim 32 --depth 2 --seq-len 16 --seed 0 --out p.json
//   flaxpp apply gmlp --params p.json --tokens t.json --out o.json --grad
//
// init writes {"params": ...} (the tree of models::gMLP::init, insertion order) to FILE.json or
// FILE.msgpack (flax.serialization.to_bytes bytes), atomically (core/serialization's save).
// apply reads such a file (also one written by Flax or by shared/bench/torch_gmlp.py) and
// int tokens from JSON, shape (L,) or (B, L), and writes {"logits": nested list (L, V) or
// (B, L, V)}; with --grad also "loss" (models::next_token_loss, the mean next-token softmax
// cross-entropy) and "grads" ({"params": ...}, the gradient of the loss in the params' layout).
// The model flags of apply are optional: num_tokens, dim, depth, ff_mult, attn_dim and seq_len
// are read off the parameter shapes, and flags that are given must agree with them. Causality is
// not stored in parameters: --causal (default) or --no-causal.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "core/autodiff.hpp"
#include "core/format.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "models/gmlp.hpp"
#include "serialization/serialization.hpp"

namespace {

using namespace flaxpp;

struct ModelFlags {
  int64_t num_tokens = 0, dim = 0, depth = 0, ff_mult = 4, attn_dim = 0, seq_len = 0;
  bool causal = true;
  std::string compat = "current";
  // The options, to tell "given" from "default".
  CLI::Option *num_tokens_opt = nullptr, *dim_opt = nullptr, *depth_opt = nullptr,
              *ff_mult_opt = nullptr, *attn_dim_opt = nullptr, *seq_len_opt = nullptr;
};

void add_model_flags(CLI::App* cmd, ModelFlags& f, bool required) {
  f.num_tokens_opt =
      cmd->add_option("--num-tokens", f.num_tokens, "vocabulary size (Embed rows, logits)")
          ->check(CLI::PositiveNumber)
          ->required(required);
  f.dim_opt = cmd->add_option("--dim", f.dim, "model width")
                  ->check(CLI::PositiveNumber)
                  ->required(required);
  f.depth_opt = cmd->add_option("--depth", f.depth, "number of gMLP blocks")
                    ->check(CLI::NonNegativeNumber)
                    ->required(required);
  f.ff_mult_opt = cmd->add_option("--ff-mult", f.ff_mult, "dim_ff = dim * ff_mult (default 4)")
                      ->check(CLI::PositiveNumber);
  f.attn_dim_opt =
      cmd->add_option("--attn-dim", f.attn_dim, "tiny attention head size (aMLP); off by default")
          ->check(CLI::PositiveNumber);
  f.seq_len_opt = cmd->add_option("--seq-len", f.seq_len,
                                  "n: spatial gating with (n, n) spatial_weights; off by default")
                      ->check(CLI::PositiveNumber);
  cmd->add_flag("--causal,!--no-causal", f.causal,
                "causal spatial gating and attention (default), or bidirectional with --no-causal");
  cmd->add_option("--compat", f.compat,
                  "key derivation / numerics profile: current, 2024 or 2021 (default current)")
      ->check(CLI::IsMember({"current", "2024", "2021"}));
}

models::gMLP model_of(const ModelFlags& f) {
  if ((f.dim * f.ff_mult) % 2 != 0)
    throw std::invalid_argument(
        "--dim * --ff-mult must be even (the spatial gating unit splits it in two), got " +
        std::to_string(f.dim) + " * " + std::to_string(f.ff_mult));
  models::gMLP m{.num_tokens = f.num_tokens,
                 .dim = f.dim,
                 .depth = f.depth,
                 .ff_mult = f.ff_mult,
                 .causal = f.causal};
  if (f.attn_dim > 0) m.attn_dim = f.attn_dim;
  if (f.seq_len > 0) m.seq_len = f.seq_len;
  return m;
}

std::string describe(const models::gMLP& m) {
  std::string s = "gMLP(num_tokens=" + std::to_string(m.num_tokens.value_or(0)) +
                  ", dim=" + std::to_string(m.dim) + ", depth=" + std::to_string(m.depth) +
                  ", ff_mult=" + std::to_string(m.ff_mult);
  if (m.attn_dim) s += ", attn_dim=" + std::to_string(*m.attn_dim);
  if (m.seq_len)
    s += ", seq_len=" + std::to_string(*m.seq_len) + (m.causal ? ", causal" : ", non-causal");
  else if (m.attn_dim)
    s += m.causal ? ", causal" : ", non-causal";
  return s + ")";
}

using format::with_commas;

// Refuses, before anything is allocated, a model whose parameters alone exceed this machine's
// memory, naming the flag whose term dominates (float64 estimate: the flags may overflow int64).
void refuse_unaffordable(const models::gMLP& m, const ModelFlags& f) {
  const double d = static_cast<double>(m.dim), ff = d * static_cast<double>(m.ff_mult), h = ff / 2,
               V = static_cast<double>(*m.num_tokens), depth = static_cast<double>(m.depth),
               n = static_cast<double>(m.seq_len.value_or(0)),
               a = static_cast<double>(m.attn_dim.value_or(0));
  const std::pair<std::string, double> terms[] = {
      {"--num-tokens " + std::to_string(f.num_tokens), 2 * V * d},
      {"--dim " + std::to_string(f.dim) + " / --ff-mult " + std::to_string(f.ff_mult),
       depth * (d * ff + h * h + h * d)},
      {"--seq-len " + std::to_string(f.seq_len), depth * n * n},
      {"--attn-dim " + std::to_string(f.attn_dim), depth * (d * 3 * a + a * h)}};
  double total = 0;
  const std::pair<std::string, double>* top = &terms[0];
  for (const auto& t : terms) {
    total += t.second;
    if (t.second > top->second) top = &t;
  }
  const double bytes = 4 * total, limit = static_cast<double>(memory_limit_bytes());
  if (bytes > limit) {
    char buf[320];
    std::snprintf(buf, sizeof buf,
                  ": %s has about %.3g parameters (%.1f GiB of float32), more than this "
                  "machine's memory and swap (%.1f GiB)",
                  describe(m).c_str(), total, bytes / (1 << 30), limit / (1 << 30));
    throw cli::ArgError(top->first + buf);
  }
}

// ---- flaxpp init gmlp ---------------------------------------------------------------------------

int run_init(int argc, char** argv) {
  CLI::App app{"Initialise a model and save its variables {\"params\": ...} in Flax's layout.",
               "flaxpp init"};
  app.require_subcommand(1);
  auto* cmd = app.add_subcommand(
      "gmlp", "gMLP (gmlp_flax, plus --seq-len spatial gating and --attn-dim attention)");
  ModelFlags f;
  add_model_flags(cmd, f, true);
  int64_t seed = 0;
  std::string out;
  cmd->add_option("--seed", seed, "PRNGKey(seed) for the params stream (default 0)");
  cmd->add_option("--out", out,
                  "output file: .json (nested lists) or .msgpack (flax.serialization bytes)")
      ->required();
  CLI11_PARSE(app, argc, argv);

  format_of(out);  // fail on a bad extension before the work
  models::gMLP model = model_of(f);
  refuse_unaffordable(model, f);
  // Parameter shapes do not depend on the tokens; a spatial model needs L <= n (== n if
  // non-causal), so init runs on (1, n) zeros, the original on a single token.
  Array tokens = jnp::zeros({1, model.seq_len.value_or(1)}, DType::int32);
  auto t0 = std::chrono::steady_clock::now();
  Tree variables;
  try {
    variables = model.init(random::PRNGKey(seed), tokens, nn::compat_from_name(f.compat));
  } catch (const AllocationError& e) {
    throw cli::ArgError("the model flags (" + describe(model) + "): " + e.what());
  }
  double init_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  save(out, variables);
  std::cout << describe(model) << ": " << with_commas(param_count(variables))
            << " parameters (seed " << seed << ", compat " << f.compat << ", init " << init_s
            << " s) -> " << out << "\n";
  return 0;
}

// ---- flaxpp apply gmlp --------------------------------------------------------------------------

const Array& leaf_at(const Tree& params, const std::string& path, const std::string& file) {
  const Tree* t = params.find(path);
  if (!t || !t->is_leaf())
    throw std::invalid_argument(file + ": no array at params/" + path +
                                " (is this a gMLP parameter file?)");
  return t->array();
}

// The hyper-parameters the shapes fix (as torch_gmlp.infer_config); given flags must agree.
void infer_config(const Tree& params, const std::string& file, ModelFlags& f) {
  auto agree = [&](CLI::Option* opt, int64_t& flag, int64_t found, const std::string& what) {
    if (opt->count() && flag != found)
      throw std::invalid_argument(opt->get_name() + " " + std::to_string(flag) +
                                  " does not match " + file + ": " + what + " gives " +
                                  std::to_string(found));
    flag = found;
  };
  const Array& emb = leaf_at(params, "to_embed/embedding", file);
  if (emb.ndim() != 2)
    throw std::invalid_argument(file + ": params/to_embed/embedding must be 2-D, got " +
                                to_string(emb.shape()));
  agree(f.num_tokens_opt, f.num_tokens, emb.shape()[0],
        "params/to_embed/embedding " + to_string(emb.shape()));
  agree(f.dim_opt, f.dim, emb.shape()[1], "params/to_embed/embedding " + to_string(emb.shape()));
  int64_t depth = 0;
  while (params.contains("layers_" + std::to_string(depth))) ++depth;
  agree(f.depth_opt, f.depth, depth, "the number of layers_i entries");
  if (depth == 0) return;
  const std::string blk = "layers_0/layers_0/layers_0/";
  const Array& pin = leaf_at(params, blk + "proj_in/kernel", file);
  if (pin.ndim() != 2 || pin.shape()[1] % f.dim != 0)
    throw std::invalid_argument(
        file + ": params/" + blk + "proj_in/kernel has shape " + to_string(pin.shape()) +
        ", expected (dim, dim * ff_mult) with dim " + std::to_string(f.dim));
  agree(f.ff_mult_opt, f.ff_mult, pin.shape()[1] / f.dim,
        "params/" + blk + "proj_in/kernel " + to_string(pin.shape()));
  if (params.contains(blk + "attn")) {
    const Array& qkv = leaf_at(params, blk + "attn/to_qkv/kernel", file);
    agree(f.attn_dim_opt, f.attn_dim, qkv.shape().back() / 3,
          "params/" + blk + "attn/to_qkv/kernel " + to_string(qkv.shape()));
  } else {
    agree(f.attn_dim_opt, f.attn_dim, 0, "no attn entry (attention off)");
  }
  if (params.contains(blk + "sgu/spatial_weights")) {
    const Array& w = leaf_at(params, blk + "sgu/spatial_weights", file);
    if (w.ndim() != 2 || w.shape()[0] != w.shape()[1])
      throw std::invalid_argument(file + ": params/" + blk +
                                  "sgu/spatial_weights must be square (n, n), got " +
                                  to_string(w.shape()));
    agree(f.seq_len_opt, f.seq_len, w.shape()[0],
          "params/" + blk + "sgu/spatial_weights " + to_string(w.shape()));
  } else {
    agree(f.seq_len_opt, f.seq_len, 0, "no spatial_weights (spatial gating off)");
  }
}

// Closed-form count of the config (gmlp.md); a mismatch means entries the model does not use.
int64_t expected_count(const models::gMLP& m) {
  const int64_t d = m.dim, ff = d * m.ff_mult, h = ff / 2, V = *m.num_tokens;
  int64_t per = 2 * d + (d * ff + ff) + 2 * h + (h * h + h) + (h * d + d);
  if (m.attn_dim) per += (d * 3 * *m.attn_dim + 3 * *m.attn_dim) + (*m.attn_dim * h + h);
  if (m.seq_len) per += *m.seq_len * *m.seq_len + *m.seq_len;
  return V * d + m.depth * per + 2 * d + (d * V + V);
}

// Which entries of `params` differ from what `model` declares: missing, unexpected, misshaped.
std::string entry_differences(const Tree& params, const Tree& want) {
  std::vector<std::string> out;
  auto have = flatten_dict(params), need = flatten_dict(want);
  for (const auto& [path, a] : need) {
    const Tree* t = params.find(path);
    if (!t || !t->is_leaf())
      out.push_back("params/" + path + " " + to_string(a.shape()) + " is missing");
    else if (t->array().shape() != a.shape())
      out.push_back("params/" + path + " has shape " + to_string(t->array().shape()) +
                    ", the model needs " + to_string(a.shape()));
  }
  for (const auto& [path, a] : have)
    if (!want.find(path))
      out.push_back("params/" + path + " " + to_string(a.shape()) + " is not used by the model");
  std::string s;
  for (size_t i = 0; i < out.size() && i < 5; ++i) s += (i ? "; " : "") + out[i];
  if (out.size() > 5) s += "; and " + std::to_string(out.size() - 5) + " more";
  return s;
}

Array load_tokens(const std::string& file, int64_t num_tokens) {
  Tree t = load(file);
  if (!t.is_leaf())
    throw std::invalid_argument(
        file + ": tokens must be a JSON int array of shape (L,) or (B, L), got an object");
  Array tokens = t.array();
  if (tokens.dtype() != DType::int32)
    throw std::invalid_argument(file + ": tokens must be integers, got " +
                                std::string(dtype_name(tokens.dtype())) + " " +
                                to_string(tokens.shape()));
  if ((tokens.ndim() != 1 && tokens.ndim() != 2) || tokens.shape().back() < 1)
    throw std::invalid_argument(file + ": tokens must have shape (L,) or (B, L) with L >= 1, got " +
                                to_string(tokens.shape()));
  const int32_t* p = tokens.data<int32_t>();
  for (int64_t i = 0; i < tokens.size(); ++i)
    if (p[i] < 0 || p[i] >= num_tokens)
      throw std::invalid_argument(file + ": token id " + std::to_string(p[i]) +
                                  " at flat position " + std::to_string(i) + " is outside [0, " +
                                  std::to_string(num_tokens) + ")");
  return tokens;
}

int run_apply(int argc, char** argv) {
  CLI::App app{
      "Run a model on inputs from a Flax-layout parameter file; optionally the loss and its "
      "gradient.",
      "flaxpp apply"};
  app.require_subcommand(1);
  auto* cmd = app.add_subcommand(
      "gmlp", "gMLP: logits (and with --grad the next-token loss and its gradient)");
  ModelFlags f;
  add_model_flags(cmd, f, false);
  std::string params_file, tokens_file, out;
  bool with_grad = false;
  cmd->add_option("--params", params_file, "{\"params\": ...} as .json or .msgpack")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--tokens", tokens_file, "JSON int array, shape (L,) or (B, L)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", out, "output .json: {\"logits\", and with --grad \"loss\", \"grads\"}")
      ->required();
  cmd->add_flag("--grad", with_grad,
                "also the mean next-token cross-entropy and its gradient w.r.t. every parameter");
  CLI11_PARSE(app, argc, argv);
  cli::refuse_same_file("--out", out, "--params", params_file);
  cli::refuse_same_file("--out", out, "--tokens", tokens_file);

  format_of(out);
  Tree variables = load(params_file);
  if (!variables.is_dict() || !variables.contains("params") || variables["params"].is_leaf())
    throw std::invalid_argument(params_file + ": expected Flax's layout {\"params\": {...}}");
  const Tree& params = variables["params"];
  infer_config(params, params_file, f);
  models::gMLP model = model_of(f);
  if (param_count(params) != expected_count(model)) {
    // The model's own tree says which entries differ (init costs what apply will cost anyway).
    Tree want =
        model.init(random::PRNGKey(0), jnp::zeros({1, model.seq_len.value_or(1)}, DType::int32),
                   nn::compat_from_name(f.compat))["params"];
    throw std::invalid_argument(params_file + ": " + with_commas(param_count(params)) +
                                " parameters, but " + describe(model) + " has " +
                                with_commas(expected_count(model)) + ": " +
                                entry_differences(params, want));
  }
  Array tokens = load_tokens(tokens_file, *model.num_tokens);
  const nn::Compat compat = nn::compat_from_name(f.compat);
  auto where = [&] { return tokens_file + " " + to_string(tokens.shape()) + ": "; };

  Tree result;
  std::string summary;
  try {
    if (!with_grad) {
      Array logits = model.apply(variables, tokens, compat);
      result = Tree{{"logits", logits}};
      summary = "logits " + to_string(logits.shape());
    } else {
      if (tokens.shape().back() < 2)
        throw std::invalid_argument(
            where() + "--grad needs at least 2 tokens per sequence (next-token loss)");
      // grad's own check would not say which parameter; the model's would say it without --grad.
      for (const auto& [path, a] : flatten_dict(params))
        if (!a.is_float())
          throw std::invalid_argument(params_file + ": params/" + path + " has dtype " +
                                      dtype_name(a.dtype()) +
                                      "; --grad differentiates float32 parameters only");
      auto loss_fn = [&](const Tree& p) {
        Array logits = model.apply(Tree{{"params", p}}, tokens, compat);
        return std::make_pair(models::next_token_loss(logits, tokens), logits);
      };
      auto [loss, logits, grads] = value_and_grad(loss_fn, has_aux)(params);
      result = Tree{{"logits", logits}, {"loss", loss}, {"grads", Tree{{"params", grads}}}};
      summary = "logits " + to_string(logits.shape()) + ", loss " +
                std::to_string(loss.item<float>()) + ", grads";
    }
  } catch (const nn::ModuleError& e) {
    throw std::invalid_argument(where() + e.what());
  }
  save(out, result);
  std::cout << describe(model) << " on tokens " << to_string(tokens.shape()) << ": " << summary
            << " -> " << out << "\n";
  return 0;
}

flaxpp::cli::Register reg_init(
    "init", "initialise a model's params ({\"params\": ...} as .json/.msgpack): init gmlp",
    run_init);
flaxpp::cli::Register reg_apply(
    "apply", "run a model from a params file (logits, loss, grads as JSON): apply gmlp", run_apply);

}  // namespace
