// The command-line flags both training examples share, through CLI11.
//
//   struct Config {
//     examples::RunFlags run{.steps = 3000, .ckpt_every = 500, .out_dir = "out/charlm"};
//     examples::ModelFlags model{.dim = 128, .depth = 3, .ff_mult = 2};
//     examples::OptimizerFlags optim{.batch = 32, .lr = 1e-2, .warmup = 100};
//   };
//   CLI::App app{"..."};
//   examples::add_run_flags(app, cfg.run);        // --steps --time-limit --resume --distributed ...
//   examples::add_model_flags(app, cfg.model);    // --dim --depth --ff-mult
//   examples::add_optimizer_flags(app, cfg.optim, {.batch = "windows per global batch", ...});
//   CLI11_PARSE(app, argc, argv);   // --optimizer --schedule --accumulate: common/optimizer.hpp
//
// --batch is always the global batch: with --distributed each of the N ranks computes the
// gradient of batch / N of its rows (examples/common/distributed.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace examples {

// The names --optimizer and --schedule accept (examples/common/optimizer.hpp builds them).
inline const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names{"adamw", "adam",    "nadam",    "radam",
                                              "sgd",   "rmsprop", "adagrad",  "adafactor",
                                              "lion",  "lamb",    "adabelief"};
  return names;
}
inline const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names{"warmup_cosine", "constant",           "cosine",
                                              "linear",        "exponential",        "piecewise",
                                              "polynomial",    "warmup_exponential", "onecycle"};
  return names;
}

// How a run goes: its length, time limit, logging, checkpoints, threads and processes.
struct RunFlags {
  int64_t steps = 1000;
  double time_limit = 0;  // seconds, 0 = none
  int64_t stop_at = 0;  // stop at this step as a time limit would (0 = never); for testing --resume
  int64_t seed = 0;
  int64_t log_every = 50;
  int64_t ckpt_every = 500;
  int keep = 3;
  bool resume = false;
  int64_t resume_step = -1;  // --resume-step N: that checkpoint instead of the newest (sets resume)
  bool overwrite = false;    // a fresh run may replace the checkpoints of an earlier one
  std::string out_dir;
  std::string ckpt_dir;  // default: <out_dir>/ckpt
  int threads = 0;       // 0 = all cores (with --distributed: the cores / the ranks on this host)
  bool distributed = false;  // data-parallel over the MPI ranks (mpirun -np N)
  int prefetch = 2;          // batches the input pipeline's thread keeps ready (0 = none)
};

// The width and depth of the examples' gMLPs.
struct ModelFlags {
  int64_t dim = 128;
  int64_t depth = 3;
  int64_t ff_mult = 2;
};

// clip_by_global_norm -> --optimizer (AdamW) with --schedule (warmup then cosine decay), on
// batches of `batch`, --accumulate of them per update (examples/common/optimizer.hpp).
struct OptimizerFlags {
  int64_t batch = 32;  // global: every rank together
  double lr = 1e-3;
  int64_t warmup = 100;
  double weight_decay = 0.01;
  double clip = 1.0;
  std::string optimizer = "adamw";
  std::string schedule = "warmup_cosine";
  int64_t accumulate = 1;
};

// What --batch counts and which parameters --weight-decay applies to, per example.
struct OptimizerHelp {
  std::string batch = "examples per global batch";
  std::string weight_decay = "AdamW decay";
};

inline void add_run_flags(CLI::App& app, RunFlags& f) {
  app.add_option("--steps", f.steps, "total optimizer steps; the learning-rate schedule spans them")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option(
         "--time-limit", f.time_limit,
         "seconds (from program start) after which to stop, evaluate and checkpoint; 0 = none. "
         "The schedule still spans --steps")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--stop-at", f.stop_at,
                 "stop at this step as --time-limit would (for testing --resume); 0 = never")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", f.seed,
                 "seed of PRNGKey(seed): initialisation, batches, dropout, sampling")
      ->capture_default_str();
  app.add_option("--log-every", f.log_every,
                 "steps between metrics.csv rows (and progress lines when not a tty)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--ckpt-every", f.ckpt_every,
                 "steps between checkpoints (one is also written at the end)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--keep", f.keep, "checkpoints to keep (older ones are deleted)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  auto* resume = app.add_flag("--resume", f.resume,
                              "continue bit-for-bit from the newest checkpoint in --ckpt-dir "
                              "that verifies (newer ones that do not are skipped, saying why)");
  app.add_option_function<int64_t>(
         "--resume-step", [&f](int64_t step) { f.resume_step = step, f.resume = true; },
         "continue from the checkpoint of this step (implies --resume)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--overwrite", f.overwrite,
               "start afresh in a directory holding an earlier run's checkpoints (they are moved "
               "aside, and deleted once this run has saved its first checkpoint)")
      ->excludes(resume);
  app.add_option("--out-dir", f.out_dir, "where metrics.csv, the PNG plot and params.json go")
      ->capture_default_str();
  app.add_option("--ckpt-dir", f.ckpt_dir, "checkpoint directory (default: <out-dir>/ckpt)");
  app.add_option("--threads", f.threads,
                 "threads per process in flaxpp's pool (matrix products, kernels, random draws; "
                 "0 = FLAXPP_NUM_THREADS if set, else all cores; with --distributed, the cores "
                 "shared out among the ranks on each host)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--prefetch", f.prefetch,
                 "batches the input pipeline's background thread keeps ready (0 = none; the "
                 "batches are the same either way)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--distributed", f.distributed,
               "data-parallel training under mpirun: each rank takes batch / ranks rows of the "
               "global batch, gradients are averaged across ranks, rank 0 writes every file");
}

inline void add_model_flags(CLI::App& app, ModelFlags& f) {
  app.add_option("--dim", f.dim, "model width")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--depth", f.depth, "gMLP blocks")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--ff-mult", f.ff_mult, "block hidden width = ff_mult * dim (the paper: 6)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
}

inline void add_optimizer_flags(CLI::App& app, OptimizerFlags& f, const OptimizerHelp& help) {
  app.add_option("--batch", f.batch, help.batch)->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--lr", f.lr, "peak learning rate")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", f.warmup, "linear warmup steps")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--weight-decay", f.weight_decay, help.weight_decay)->capture_default_str();
  app.add_option("--clip", f.clip, "global-norm gradient clipping")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--optimizer", f.optimizer, "optax optimizer (after --clip)")
      ->capture_default_str()
      ->check(CLI::IsMember(optimizer_names()));
  app.add_option("--schedule", f.schedule,
                 "learning-rate schedule over the run, peaking at --lr (warmup_*: --warmup steps)")
      ->capture_default_str()
      ->check(CLI::IsMember(schedule_names()));
  app.add_option("--accumulate", f.accumulate,
                 "batches per optimizer update (optax.MultiSteps: their mean gradient; the "
                 "effective batch is accumulate x --batch)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
}

}  // namespace examples
