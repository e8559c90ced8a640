// gmlp_bench: gMLP init, forward, forward+backward and Adam train step, next to PyTorch's figures
// from shared/bench/torch_bench.py run in the same invocation.
//
//   gmlp_bench [--quick] [--json] [--configs i,ii,iii] [--no-torch] [--torch-script PATH]
//              [--rounds N]
//
// Configs (float32, ff_mult 4, as torch_bench.py):
//   i    gMLP(num_tokens=20000, dim=512, depth=4), original mode (gmlp_flax's README), (1, 1000)
//   ii   gMLP(num_tokens=256, dim=128, depth=4, seq_len=128), spatial, causal, tokens (16, 128)
//   iii  gMLP(num_tokens=256, dim=64, depth=2, seq_len=64), spatial, causal, tokens (8, 64)
// Metrics, defined as torch_bench.py's (tokens = random::randint(PRNGKey(0), (B, L), 0, V)):
//   init        model.init(PRNGKey(0), tokens[:, :1]): parameter initialisation. Flax's init always
//               runs a forward pass; on one token it costs next to nothing, and parameter shapes do
//               not depend on L (the worker checks that the tree matches the full init's).
//   init_full   model.init(PRNGKey(0), tokens), Flax's usual call (no torch equivalent).
//   forward     model.apply(variables, tokens).
//   fwd_bwd     value_and_grad of next_token_loss(model.apply({"params": p}, tokens), tokens).
//   train_step  fwd_bwd + optax::adam(1e-3) update + apply_updates; params and opt_state carry
//               over from step to step, as in a training loop.
//   peak RSS    getrusage ru_maxrss of the worker: the whole run (torch's definition; torch's
//               includes ~230 MiB for `import torch`) and before the train step (init + forward +
//               backward, the figure config i's target is about).
// Timing plan (warm-ups, minimum timed calls, minimum seconds) and statistics are torch_bench's;
// with several rounds, a metric is the median over rounds of the per-round medians, and the
// spread (min, p25, p75, max) is over all timed calls. GFLOP/s counts matrix products only (the
// FLOP model of torch_bench.py's forward_flops); fwd_bwd and train_step count 3x the forward's.
//
// Processes: each (round, config) runs in its own child process (this binary re-executed with
// --worker), so peak RSS is per config. Then, unless --no-torch, `/usr/bin/python3 torch_bench.py
// --json --sections <configs> --threads <flaxpp threads>p --repeat <rounds> [--quick]` runs, after
// the workers, never alongside. Without python3 or torch, a note says so and flaxpp's figures are
// printed alone. Script: --torch-script, else $FLAXPP_SHARED_DIR/bench/torch_bench.py, else
// ../shared/bench/torch_bench.py next to the source checkout this binary was built from.
// Output: markdown tables on stdout; with --json one JSON object on stdout. Progress: stderr.
// Exit status 1 if a flaxpp worker failed (the other configs still run), 2 on a usage error.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sys/utsname.h>

#include "bench/gmlp_configs.hpp"
#include "bench/harness.hpp"
#include "core/autodiff.hpp"
#include "core/format.hpp"
#include "core/ops.hpp"
#include "core/parallel.hpp"
#include "core/random.hpp"
#include "core/tree.hpp"
#include "models/gmlp.hpp"
#include "optax/optax.hpp"

using namespace flaxpp;
namespace rnd = flaxpp::random;
using json = nlohmann::ordered_json;

namespace {

const char* const kPython = "/usr/bin/python3";  // Debian's: sees python3-torch
const std::vector<std::string> kMetrics = {"init", "init_full", "forward", "fwd_bwd", "train_step"};
const std::vector<std::string> kTorchMetrics = {"init", "forward", "fwd_bwd", "train_step"};

using bench::Config;
using bench::configs;
using bench::find_config;

std::string describe(const Config& c) {
  const auto& m = c.model;
  std::ostringstream s;
  s << "gMLP(num_tokens=" << *m.num_tokens << ", dim=" << m.dim << ", depth=" << m.depth;
  if (m.seq_len) s << ", seq_len=" << *m.seq_len << (m.causal ? ", causal" : "");
  s << ")" << (m.seq_len ? "" : " original mode") << ", tokens (" << c.batch << ", " << c.seq
    << ")";
  return s.str();
}

// Matrix-product FLOPs of one forward pass (2*M*N*K per product, the full L x L spatial product
// included): torch_bench.py's forward_flops()["matmul"].
double forward_flops(const Config& c) {
  const auto& m = c.model;
  const double M = static_cast<double>(c.batch * c.seq), L = static_cast<double>(c.seq),
               B = static_cast<double>(c.batch);
  const double d = static_cast<double>(m.dim), ff = d * static_cast<double>(m.ff_mult), h = ff / 2;
  double per_layer = 2 * M * (d * ff + h * h + h * d);  // proj_in, sgu.proj_out, proj_out
  if (m.seq_len) per_layer += 2 * B * L * L * h;        // W (L, L) @ gate (L, h)
  if (m.attn_dim) {
    const double a = static_cast<double>(*m.attn_dim);
    per_layer +=
        2 * M * d * 3 * a + 2 * 2 * B * L * L * a + 2 * M * a * h;  // to_qkv, q k^T, attn v, to_out
  }
  return static_cast<double>(m.depth) * per_layer +
         2 * M * d * static_cast<double>(*m.num_tokens);  // + logits
}

// torch_bench.py's timing_plan; init_full follows init's.
bench::Plan timing_plan(const std::string& config, const std::string& metric, bool quick) {
  const bool init = metric == "init" || metric == "init_full";
  if (config == "i") {  // 0.1-2 s per call
    if (quick) return {1, metric == "forward" ? 5 : 3, 0};
    return {init ? 1 : 2, 10, 0};
  }
  if (quick) return init ? bench::Plan{1, 5, 0.2} : bench::Plan{3, 10, 0.5};
  return init ? bench::Plan{1, 10, 0.5} : bench::Plan{5, 10, 2.0};
}

double round_to(double x, int digits) {
  const double f = std::pow(10.0, digits);
  return std::round(x * f) / f;
}

// ---- worker: one config, one process ------------------------------------------------------

json samples_json(const bench::Samples& s) {
  json j;
  j["ms"] = json::array();
  for (double v : s.ms) j["ms"].push_back(round_to(v, 4));
  j["first_call_ms"] = round_to(s.first_call_ms, 3);
  return j;
}

json run_worker(const Config& c, bool quick) {
  json out;
  out["config"] = c.name;
  out["rss_at_start_mib"] = round_to(bench::peak_rss_mib(), 1);
  out["flaxpp_threads"] = num_threads();
  out["openblas_threads_start"] = bench::openblas_threads();
  const auto& model = c.model;
  const Array tokens = rnd::randint(rnd::PRNGKey(0), {c.batch, c.seq}, 0, *model.num_tokens);
  const Array first = jnp::slice(tokens, 1, 0, 1);  // (B, 1)
  json samples;
  auto run = [&](const std::string& metric, const std::function<void()>& fn) {
    std::fprintf(stderr, "  %s %s...\n", c.name.c_str(), metric.c_str());
    samples[metric] = samples_json(bench::time_calls(timing_plan(c.name, metric, quick), fn));
  };

  // One tree at a time, as torch_bench's init (the previous model is freed before the next).
  std::string shapes_one, shapes_full;
  run("init", [&] {
    Tree v = model.init(rnd::PRNGKey(0), first);
    if (shapes_one.empty()) shapes_one = tree_shapes(v);  // first warm-up call only
  });
  run("init_full", [&] {
    Tree v = model.init(rnd::PRNGKey(0), tokens);
    if (shapes_full.empty()) shapes_full = tree_shapes(v);
  });
  out["init_same_shapes"] = shapes_one == shapes_full;
  if (shapes_one != shapes_full)
    std::fprintf(stderr, "gmlp_bench: %s: one-token init differs from the full init:\n%s\n%s\n",
                 c.name.c_str(), shapes_one.c_str(), shapes_full.c_str());

  Tree params = model.init(rnd::PRNGKey(0), tokens)["params"];
  out["n_params"] = param_count(params);
  out["forward_matmul_flops"] = std::llround(forward_flops(c));
  {
    const Tree variables{{"params", params}};
    run("forward", [&] { Array logits = model.apply(variables, tokens); });
  }

  auto loss_fn = [&](const Tree& p) {
    return models::next_token_loss(model.apply(Tree{{"params", p}}, tokens), tokens);
  };
  float loss = 0;
  run("fwd_bwd", [&] {
    auto [value, grads] = value_and_grad(loss_fn)(params);
    loss = value.item<float>();
  });
  out["loss_initial"] = loss;
  out["peak_rss_fwd_bwd_mib"] = round_to(bench::peak_rss_mib(), 1);

  const auto tx = optax::adam(1e-3);
  Tree opt_state = tx.init(params);
  int64_t steps = 0;
  run("train_step", [&] {
    auto [value, grads] = value_and_grad(loss_fn)(params);
    auto [updates, new_state] = tx.update(grads, opt_state, params);
    params = optax::apply_updates(params, updates);
    opt_state = std::move(new_state);
    loss = value.item<float>();
    ++steps;
  });
  out["loss_after_train"] = loss;
  out["train_steps"] = steps;
  out["peak_rss_mib"] = round_to(bench::peak_rss_mib(), 1);
  out["openblas_threads_end"] = bench::openblas_threads();
  out["samples"] = samples;
  return out;
}

// ---- driver -------------------------------------------------------------------------------

struct Options {
  bool quick = false, json = false, torch = true;
  std::vector<std::string> configs = {"i", "ii", "iii"};
  std::optional<std::string> torch_script;
  int rounds = 0;  // 0: 1 with --quick, else 3 (torch_bench's defaults)
};

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr,
               "gmlp_bench: %s\nusage: gmlp_bench [--quick] [--json] [--configs i,ii,iii] "
               "[--no-torch] [--torch-script PATH] [--rounds N]\n",
               msg.c_str());
  std::exit(2);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::stringstream ss(s);
  for (std::string p; std::getline(ss, p, sep);)
    if (!p.empty()) parts.push_back(p);
  return parts;
}

std::string default_torch_script() {
  namespace fs = std::filesystem;
  if (const char* shared = std::getenv("FLAXPP_SHARED_DIR"))
    return (fs::path(shared) / "bench" / "torch_bench.py").string();
  // __FILE__ is <checkout>/bench/gmlp_bench.cpp; shared/ sits beside the checkout.
  fs::path checkout = fs::path(__FILE__).parent_path().parent_path();
  return (checkout / ".." / "shared" / "bench" / "torch_bench.py").lexically_normal().string();
}

std::string machine() {
  utsname u{};
  return uname(&u) == 0 ? u.machine : "unknown";
}

json load_json(const std::vector<double>& l) {
  return json::array({round_to(l[0], 2), round_to(l[1], 2), round_to(l[2], 2)});
}

// Medians over rounds of the per-round medians; spreads over all timed calls.
json aggregate_flaxpp(const Config& c, const std::vector<json>& rounds) {
  json f;
  const json& r0 = rounds.front();
  json spread;
  for (const auto& m : kMetrics) {
    std::vector<double> medians, pooled;
    for (const auto& r : rounds) {
      auto ms = r["samples"][m]["ms"].get<std::vector<double>>();
      medians.push_back(bench::median(ms));
      pooled.insert(pooled.end(), ms.begin(), ms.end());
    }
    f[m + "_ms"] = round_to(bench::median(medians), 3);
    bench::Stats s = bench::stats(pooled);
    spread[m] = {{"median_ms", round_to(s.median, 3)},
                 {"min_ms", round_to(s.min, 3)},
                 {"p25_ms", round_to(s.p25, 3)},
                 {"p75_ms", round_to(s.p75, 3)},
                 {"max_ms", round_to(s.max, 3)},
                 {"n", s.n},
                 {"first_call_ms", r0["samples"][m]["first_call_ms"]}};
  }
  auto median_of = [&](const char* key) {
    std::vector<double> v;
    for (const auto& r : rounds) v.push_back(r[key].get<double>());
    return round_to(bench::median(v), 1);
  };
  f["peak_rss_mib"] = median_of("peak_rss_mib");
  f["peak_rss_fwd_bwd_mib"] = median_of("peak_rss_fwd_bwd_mib");
  const double flops = forward_flops(c);
  f["gflops_forward"] = round_to(flops / f["forward_ms"].get<double>() * 1e-6, 2);
  f["gflops_fwd_bwd"] = round_to(3 * flops / f["fwd_bwd_ms"].get<double>() * 1e-6, 2);
  f["gflops_train_step"] = round_to(3 * flops / f["train_step_ms"].get<double>() * 1e-6, 2);
  f["n_params"] = r0["n_params"];
  f["forward_matmul_flops"] = r0["forward_matmul_flops"];
  bool same = true;
  for (const auto& r : rounds) same = same && r["init_same_shapes"].get<bool>();
  f["init_same_shapes"] = same;
  f["loss_initial"] = round_to(r0["loss_initial"].get<double>(), 4);
  f["loss_after_train"] = round_to(r0["loss_after_train"].get<double>(), 4);
  f["train_steps"] = r0["train_steps"];
  f["rss_at_start_mib"] = r0["rss_at_start_mib"];
  f["rounds"] = rounds.size();
  f["spread"] = spread;
  return f;
}

json torch_entry(const json& t) {
  json e;
  for (const auto& m : kTorchMetrics) e[m + "_ms"] = t.at(m + "_ms");
  e["peak_rss_mib"] = t.at("peak_rss_mib");
  const double flops = t.at("forward_matmul_flops").get<double>();
  e["gflops_forward"] = round_to(flops / e["forward_ms"].get<double>() * 1e-6, 2);
  e["gflops_fwd_bwd"] = round_to(3 * flops / e["fwd_bwd_ms"].get<double>() * 1e-6, 2);
  e["gflops_train_step"] = round_to(3 * flops / e["train_step_ms"].get<double>() * 1e-6, 2);
  e["n_params"] = t.at("n_params");
  e["forward_matmul_flops"] = t.at("forward_matmul_flops");
  if (t.contains("timed_calls")) e["timed_calls"] = t["timed_calls"];
  if (t.contains("rounds")) e["rounds"] = t["rounds"];
  return e;
}

struct TorchRun {
  std::string status = "skipped (--no-torch)";  // "ok" or why not
  json result;                                  // torch_bench.py's JSON object
  std::string script, threads;
};

TorchRun run_torch(const Options& o, int rounds) {
  TorchRun t;
  t.script = o.torch_script ? *o.torch_script : default_torch_script();
  t.threads = std::to_string(num_threads()) + "p";
  if (!o.torch) return t;
  if (access(kPython, X_OK) != 0) {
    t.status = std::string("unavailable: no ") + kPython + " (apt-get install python3-torch)";
    return t;
  }
  if (access(t.script.c_str(), R_OK) != 0) {
    t.status = "unavailable: no torch_bench.py at " + t.script +
               " (give --torch-script PATH or set FLAXPP_SHARED_DIR)";
    return t;
  }
  std::string sections;
  for (const auto& c : o.configs) sections += (sections.empty() ? "" : ",") + c;
  std::vector<std::string> argv = {kPython,      t.script,   "--json",
                                   "--sections", sections,   "--threads",
                                   t.threads,    "--repeat", std::to_string(rounds)};
  if (o.quick) argv.push_back("--quick");
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  std::fprintf(stderr, "gmlp_bench: running %s\n", cmd.c_str());
  bench::Captured c = bench::run_capture(argv);
  if (c.status != 0) {
    t.status = "unavailable: torch_bench.py exited with status " + std::to_string(c.status) +
               " (its error is above; python3-torch installed?)";
    return t;
  }
  try {
    t.result = json::parse(c.out);
    t.status = "ok";
  } catch (const std::exception& e) {
    t.status = std::string("unavailable: torch_bench.py printed no JSON object (") + e.what() + ")";
  }
  return t;
}

// ---- human output -------------------------------------------------------------------------

std::string fmt(double v, const char* unit = "") {
  char buf[64];
  const double a = std::fabs(v);
  std::snprintf(buf, sizeof buf, a >= 100 ? "%.0f%s" : a >= 10 ? "%.1f%s" : "%.2f%s", v, unit);
  return buf;
}

using format::with_commas;

void print_table(const Config& c, const json& entry) {
  const json& f = entry["flaxpp"];
  const json* t = entry.contains("torch") ? &entry["torch"] : nullptr;
  std::printf("\n### %s: %s\n\n", c.name.c_str(), describe(c).c_str());
  std::printf(
      "%s parameters, %.3g GFLOP of matrix products per forward; loss %.3f at init, %.3f "
      "after %d Adam steps%s\n\n",
      with_commas(f["n_params"].get<int64_t>()).c_str(),
      f["forward_matmul_flops"].get<double>() * 1e-9, f["loss_initial"].get<double>(),
      f["loss_after_train"].get<double>(), f["train_steps"].get<int>(),
      f["init_same_shapes"].get<bool>() ? "" : "; ONE-TOKEN INIT HAS OTHER SHAPES");
  std::printf(
      "| metric | flaxpp median (p25-p75) | torch median | torch/flaxpp | target | met? |\n"
      "|---|---|---|---|---|---|\n");
  auto row = [&](const std::string& label, const std::string& key, const std::string& flaxpp,
                 const char* unit) {
    std::string tv = "-", ratio = "-", target = "", met = "";
    if (t && t->contains(key)) {
      tv = fmt((*t)[key].get<double>(), unit);
      ratio = fmt((*t)[key].get<double>() / f[key].get<double>());
    }
    if (auto it = c.targets.find(key); it != c.targets.end()) {
      target = "<= " + fmt(it->second, unit);
      met = f[key].get<double>() <= it->second ? "yes" : "**no**";
    }
    std::printf("| %s | %s | %s | %s | %s | %s |\n", label.c_str(), flaxpp.c_str(), tv.c_str(),
                ratio.c_str(), target.c_str(), met.c_str());
  };
  const std::map<std::string, std::string> labels = {
      {"init", "init (params only)"},
      {"init_full", "init_full (Flax init, with forward)"},
      {"forward", "forward"},
      {"fwd_bwd", "forward+backward"},
      {"train_step", "Adam train step"}};
  for (const auto& m : kMetrics) {
    const json& s = f["spread"][m];
    std::string cell = fmt(f[m + "_ms"].get<double>(), " ms") + " (" +
                       fmt(s["p25_ms"].get<double>()) + "-" + fmt(s["p75_ms"].get<double>()) + ")";
    row(labels.at(m), m + "_ms", cell, " ms");
  }
  for (const char* m : {"forward", "fwd_bwd", "train_step"}) {
    const std::string key = std::string("gflops_") + m;
    row(std::string("GFLOP/s ") + m, key, fmt(f[key].get<double>()), "");
  }
  row("peak RSS, whole run", "peak_rss_mib", fmt(f["peak_rss_mib"].get<double>(), " MiB"), " MiB");
  row("peak RSS, init+forward+backward", "peak_rss_fwd_bwd_mib",
      fmt(f["peak_rss_fwd_bwd_mib"].get<double>(), " MiB"), " MiB");
}

// The run's header: date, machine, threads and load, also printed to stderr.
json run_header(const Options& o, int rounds) {
  json out;
  out["benchmark"] = "gmlp-flaxpp";
  out["format_version"] = 1;
  out["date"] = bench::iso_now();
  out["machine"] = machine();
  out["cpu"] = bench::cpu_model();
  out["nproc"] = sysconf(_SC_NPROCESSORS_ONLN);
  out["load_avg_before"] = load_json(bench::load_avg());
  out["quick"] = o.quick;
  out["rounds"] = rounds;
  out["flaxpp_threads"] = num_threads();
  out["openblas_threads"] = bench::openblas_threads();
  std::fprintf(stderr,
               "gmlp_bench: %s, %s %s, %ld CPUs; flaxpp threads %d, OpenBLAS threads %d; load "
               "average %s\n",
               out["date"].get<std::string>().c_str(), out["cpu"].get<std::string>().c_str(),
               out["machine"].get<std::string>().c_str(), out["nproc"].get<long>(), num_threads(),
               bench::openblas_threads(), out["load_avg_before"].dump().c_str());
  return out;
}

struct WorkerResults {
  std::map<std::string, std::vector<json>> rounds;  // per config, one worker's JSON per round
  std::vector<std::string> failed;
  json openblas_threads;  // as the last worker reported it
};

// Phase 1: each config in its own worker process, `rounds` times, configs interleaved.
WorkerResults run_workers(const Options& o, int rounds) {
  WorkerResults res;
  for (int r = 0; r < rounds; ++r)
    for (const auto& name : o.configs) {
      std::vector<std::string> argv = {"/proc/self/exe", "--worker", name};
      if (o.quick) argv.push_back("--quick");
      std::fprintf(stderr, "gmlp_bench: [round %d] %s: %s\n", r, name.c_str(),
                   describe(*find_config(name)).c_str());
      const auto t0 = std::chrono::steady_clock::now();
      bench::Captured c = bench::run_capture(argv);
      const double wall =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const auto pos = c.out.rfind("RESULT ");
      if (c.status != 0 || pos == std::string::npos) {
        std::fprintf(stderr, "gmlp_bench: worker %s failed (exit status %d)\n", name.c_str(),
                     c.status);
        res.failed.push_back(name);
        continue;
      }
      json w = json::parse(c.out.substr(pos + 7));
      std::string line;
      for (const auto& m : kMetrics)
        line += " " + m + "=" +
                fmt(bench::median(w["samples"][m]["ms"].get<std::vector<double>>()), "ms");
      std::fprintf(stderr, "gmlp_bench: [round %d] %s:%s peakRSS=%.0fMiB (%.1f s)\n", r,
                   name.c_str(), line.c_str(), w["peak_rss_mib"].get<double>(), wall);
      res.openblas_threads = w["openblas_threads_end"];
      res.rounds[name].push_back(std::move(w));
    }
  return res;
}

// Phase 3: one config's entry: flaxpp's aggregate, torch's figures and the ratios, the targets.
json config_entry(const Config& c, const std::vector<json>& rounds, const TorchRun& torch) {
  const std::string& name = c.name;
  const json f = aggregate_flaxpp(c, rounds);
  json entry;
  entry["model"] = describe(c);
  entry["flaxpp"] = f;
  if (torch.status == "ok" && torch.result["configs"].contains(name)) {
    const json t = torch_entry(torch.result["configs"][name]);
    json ratio;
    for (const auto& m : kTorchMetrics)
      ratio[m + "_ms"] = round_to(t[m + "_ms"].get<double>() / f[m + "_ms"].get<double>(), 3);
    ratio["peak_rss_mib"] =
        round_to(t["peak_rss_mib"].get<double>() / f["peak_rss_mib"].get<double>(), 3);
    entry["torch"] = t;
    entry["ratio"] = ratio;
    if (t["n_params"] != f["n_params"])
      std::fprintf(stderr, "gmlp_bench: %s: torch has %s parameters, flaxpp %s\n", name.c_str(),
                   t["n_params"].dump().c_str(), f["n_params"].dump().c_str());
    if (t["forward_matmul_flops"].get<double>() != f["forward_matmul_flops"].get<double>())
      std::fprintf(stderr, "gmlp_bench: %s: torch counts %s forward FLOPs, flaxpp %s\n",
                   name.c_str(), t["forward_matmul_flops"].dump().c_str(),
                   f["forward_matmul_flops"].dump().c_str());
  }
  json targets, met;
  for (const auto& [key, bound] : c.targets) {
    targets[key] = bound;
    met[key] = f[key].get<double>() <= bound;
  }
  entry["targets"] = targets;
  entry["met"] = met;
  return entry;
}

// Phase 4 without --json: the header lines and one table per config.
void print_report(const Options& o, int rounds, const json& out, const TorchRun& torch,
                  const std::vector<std::string>& failed) {
  const json& cfgs = out["configs"];
  std::printf("gmlp_bench %s on %s (%s, %ld CPUs)%s\n", out["date"].get<std::string>().c_str(),
              out["cpu"].get<std::string>().c_str(), out["machine"].get<std::string>().c_str(),
              out["nproc"].get<long>(), o.quick ? ", --quick" : "");
  std::printf("rounds %d; flaxpp threads %d; OpenBLAS threads %d at start, %s in the workers\n",
              rounds, num_threads(), bench::openblas_threads(),
              out.value("openblas_threads_workers", json(-1)).dump().c_str());
  std::printf("load average before %s, after %s\n", out["load_avg_before"].dump().c_str(),
              out["load_avg_after"].dump().c_str());
  if (torch.status == "ok")
    std::printf("torch %s: torch_bench.py --threads %s (%s)\n",
                out["torch"]["version"].get<std::string>().c_str(), torch.threads.c_str(),
                torch.script.c_str());
  else
    std::printf("torch: %s\n", torch.status.c_str());
  for (const auto& name : o.configs)
    if (cfgs.contains(name)) print_table(*find_config(name), cfgs[name]);
  if (torch.status == "ok")
    std::printf(
        "\ntorch/flaxpp > 1: flaxpp takes less time or memory (for GFLOP/s, < 1: flaxpp is "
        "faster). torch's peak RSS includes ~230 MiB for `import torch`.\n");
  for (const auto& name : failed) std::printf("\nFAILED: worker for config %s\n", name.c_str());
}

int driver(const Options& o) {
  const int rounds = o.rounds > 0 ? o.rounds : (o.quick ? 1 : 3);
  const auto t_start = std::chrono::steady_clock::now();
  json out = run_header(o, rounds);
  WorkerResults workers = run_workers(o, rounds);  // 1: flaxpp, each config in its own process
  if (!workers.openblas_threads.is_null())
    out["openblas_threads_workers"] = workers.openblas_threads;

  TorchRun torch = run_torch(o, rounds);  // 2: torch, after the flaxpp workers, never alongside
  out["torch"] = {{"status", torch.status}, {"script", torch.script}, {"threads", torch.threads}};
  if (torch.status == "ok") {
    out["torch"]["version"] = torch.result.value("torch", "");
    out["torch"]["wall_s"] = torch.result.value("wall_s", 0.0);
  } else if (o.torch) {
    std::fprintf(stderr, "gmlp_bench: torch %s; flaxpp figures only\n", torch.status.c_str());
  }
  out["load_avg_after"] = load_json(bench::load_avg());
  out["wall_s"] = round_to(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count(), 1);

  json cfgs = json::object();  // 3: aggregate, compare, check targets
  for (const auto& name : o.configs)
    if (workers.rounds.count(name))
      cfgs[name] = config_entry(*find_config(name), workers.rounds[name], torch);
  out["configs"] = cfgs;
  if (!workers.failed.empty()) out["failed"] = workers.failed;

  if (o.json)  // 4: report
    std::printf("%s\n", out.dump(1).c_str());
  else
    print_report(o, rounds, out, torch, workers.failed);
  return workers.failed.empty() ? 0 : 1;
}
}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::optional<std::string> worker;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) usage_error(a + " needs a value");
      return args[++i];
    };
    if (a == "--quick")
      o.quick = true;
    else if (a == "--json")
      o.json = true;
    else if (a == "--no-torch")
      o.torch = false;
    else if (a == "--configs")
      o.configs = split(value(), ',');
    else if (a == "--torch-script")
      o.torch_script = value();
    else if (a == "--rounds") {
      o.rounds = std::atoi(value().c_str());
      if (o.rounds < 1) usage_error("--rounds needs a number >= 1");
    } else if (a == "--worker")
      worker = value();
    else if (a == "--help" || a == "-h") {
      std::printf(
          "%s",
          "usage: gmlp_bench [--quick] [--json] [--configs i,ii,iii] [--no-torch] "
          "[--torch-script PATH] [--rounds N]\n"
          "gMLP init, forward, forward+backward and Adam train step of configs i, ii, "
          "iii (see bench/gmlp_bench.cpp),\neach in its own process, next to "
          "shared/bench/torch_bench.py's figures.\n"
          "  --quick          fewer timed calls, 1 round (a few minutes with torch)\n"
          "  --json           one JSON object on stdout (progress on stderr)\n"
          "  --configs LIST   comma list of i, ii, iii (default all)\n"
          "  --no-torch       skip torch_bench.py\n"
          "  --torch-script P torch_bench.py to run (default $FLAXPP_SHARED_DIR/bench/"
          "torch_bench.py,\n                   else ../shared/bench/ beside the source "
          "checkout)\n"
          "  --rounds N       rounds, for flaxpp and torch (default 3, or 1 with --quick)\n");
      return 0;
    } else
      usage_error("unknown argument " + a);
  }
  if (worker) {
    const Config* c = find_config(*worker);
    if (!c) usage_error("unknown config " + *worker);
    json r = run_worker(*c, o.quick);
    std::printf("RESULT %s\n", r.dump().c_str());
    return 0;
  }
  if (o.configs.empty()) usage_error("--configs is empty");
  for (const auto& c : o.configs)
    if (!find_config(c)) usage_error("unknown config " + c + " (use i, ii, iii)");
  return driver(o);
}
