// The usage example of gmlp_flax's README, line for line, then what it leaves out: the model
// summary, the parameter count, and a forward pass.
//
//   gmlp_flax (Python, flax 0.3.4):
//     key = jax.random.PRNGKey(0)
//     x = jax.random.randint(key, (1, 1000), 0, 20000)
//     model = gMLP(num_tokens=20000, dim=512, depth=4)
//     variables = model.init({"params": key}, x)
//   flaxpp:
//     random::Key key = random::PRNGKey(0);
//     Array x = random::randint(key, {1, 1000}, 0, 20000);
//     models::gMLP model{.num_tokens = 20000, .dim = 512, .depth = 4};
//     Tree variables = model.init(nn::Rngs{{"params", key}}, x);
//
//   readme_usage [--compat current|2024|2021] [--no-table]
// With --compat 2021 (flax 0.3.4 keys, JAX 0.2.16 bits) the printed values are the ones the 2021
// package would give (flax-semantics.md §7.6: embedding starts -0.0149658, -0.0323081, 0.0191250).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "core/format.hpp"
#include "core/random.hpp"
#include "core/tree.hpp"
#include "models/gmlp.hpp"

using namespace flaxpp;

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
using format::with_commas;
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "gmlp_flax's README example in flaxpp: gMLP(num_tokens=20000, dim=512, depth=4) on (1, 1000) "
      "tokens"};
  std::string compat_name = "current";
  bool no_table = false;
  app.add_option("--compat", compat_name, "key derivation / bits profile: current, 2024 or 2021")
      ->check(CLI::IsMember({"current", "2024", "2021"}));
  app.add_flag("--no-table", no_table, "skip the tabulate summary");
  CLI11_PARSE(app, argc, argv);
  const nn::Compat compat = nn::compat_from_name(compat_name);
  nn::set_default_compat(compat);                         // init, apply and tabulate
  random::ScopedBitsMode bits(nn::bits_mode_of(compat));  // randint below

  std::cout
      << "flaxpp: gMLP exactly as gmlp_flax's README (\"Pay Attention to MLPs\", Liu et al. 2021), "
      << "compat profile " << nn::compat_name(compat) << "\n\n";

  // ---- the README, line for line ----
  random::Key key = random::PRNGKey(0);
  Array x = random::randint(key, {1, 1000}, 0, 20000);
  models::gMLP model{.num_tokens = 20000, .dim = 512, .depth = 4};
  auto t0 = std::chrono::steady_clock::now();
  Tree variables = model.init(nn::Rngs{{"params", key}}, x);
  const double init_s = seconds_since(t0);

  // ---- what the README does not show ----
  if (!no_table) std::cout << model.tabulate(nn::Rngs{{"params", key}}, x) << "\n";
  const Tree& params = variables["params"];
  std::cout << "parameters: " << with_commas(param_count(params)) << " ("
            << param_bytes(params) / 1e6 << " MB as float32; gmlp_flax: 31,013,408)\n";
  std::cout << "init (model.init({\"params\": key}, x), one forward pass included): " << init_s
            << " s\n";
  const float* emb = params.at("to_embed/embedding").array().data<float>();
  std::printf("to_embed/embedding[0, :3] = [%.7f, %.7f, %.7f]\n", emb[0], emb[1], emb[2]);

  double best = 1e30;
  Array logits;
  for (int run = 0; run < 3; ++run) {
    auto t1 = std::chrono::steady_clock::now();
    logits = model.apply(variables, x);
    best = std::min(best, seconds_since(t1));
  }
  std::cout << "forward (model.apply(variables, x)): " << best << " s (best of 3), logits "
            << to_string(logits.shape()) << " " << dtype_name(logits.dtype()) << "\n";
  Array loss = models::next_token_loss(logits, x);
  std::cout << "next-token cross-entropy at init: " << loss.item<float>()
            << " (ln 20000 = 9.9035)\n";
  return 0;
}
