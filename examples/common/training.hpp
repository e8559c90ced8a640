// What both training examples share: the run flags, threads, the checkpoint directory, timing.
//
//   examples::RunFlags run{.steps = 3000, .ckpt_every = 500};   // the example's defaults
//   CLI::App app{"..."};
//   examples::add_run_flags(app, run);                          // --steps --time-limit --resume ...
//   CLI11_PARSE(app, argc, argv);
//   examples::setup_runtime(run.threads);                       // before any array work
//   auto restored = examples::open_checkpoints(run, fresh_state); // the newest one with --resume
//   examples::Deadline deadline(run);  ...  if (deadline.reached(state.step)) break;
//
// Checkpoints live in --ckpt-dir (default <out-dir>/ckpt). A fresh run (no --resume) removes the
// checkpoint_<step>.msgpack files an earlier run left there, saying so, so that a later --resume
// can never pick up a stale run; --resume restores the newest one and fails if there is none.
#pragma once

#include <malloc.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "nn/train_state.hpp"

extern "C" void openblas_set_num_threads(int num_threads);  // OpenBLAS's cblas.h; flaxpp links it

namespace examples {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The process start, for --time-limit (taken when this header's statics initialise).
inline const Clock::time_point kProcessStart = Clock::now();

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct RunFlags {
  int64_t steps = 1000;
  double time_limit = 0;  // seconds, 0 = none
  int64_t stop_at = 0;  // stop at this step as a time limit would (0 = never); for testing --resume
  int64_t seed = 0;
  int64_t log_every = 50;
  int64_t ckpt_every = 500;
  int keep = 3;
  bool resume = false;
  std::string out_dir;
  std::string ckpt_dir;  // default: <out_dir>/ckpt
  int threads = 0;       // 0 = all cores
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
  app.add_flag("--resume", f.resume,
               "continue bit-for-bit from the newest checkpoint in --ckpt-dir");
  app.add_option("--out-dir", f.out_dir, "where metrics.csv, the PNG plot and params.json go")
      ->capture_default_str();
  app.add_option("--ckpt-dir", f.ckpt_dir, "checkpoint directory (default: <out-dir>/ckpt)");
  app.add_option("--threads", f.threads,
                 "worker threads for BLAS and flaxpp's kernels (0 = all cores)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
}

inline fs::path ckpt_dir_of(const RunFlags& f) {
  return f.ckpt_dir.empty() ? fs::path(f.out_dir) / "ckpt" : fs::path(f.ckpt_dir);
}

// Call before any array work:
// - threads for OpenBLAS and flaxpp's kernel pool (which reads FLAXPP_NUM_THREADS when it starts,
//   i.e. at the first parallel kernel); 0 leaves the defaults.
// - glibc malloc keeps freed memory instead of returning it to the kernel. A training step frees
//   and reallocates the same multi-megabyte activation buffers every step; with glibc's defaults
//   each one is a fresh mmap whose pages fault in again, which cost as much system time as the
//   whole computation (measured: 2x tokens/s on train_charlm with these two settings).
inline void setup_runtime(int threads) {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (threads <= 0) return;
  setenv("FLAXPP_NUM_THREADS", std::to_string(threads).c_str(), 1);
  openblas_set_num_threads(threads);
}

// With --resume: `fresh` restored from the newest checkpoint (throws if there is none). Without:
// removes stale checkpoints from the directory and returns `fresh`.
inline flaxpp::training::TrainState open_checkpoints(const RunFlags& f,
                                                     const flaxpp::training::TrainState& fresh) {
  fs::path dir = ckpt_dir_of(f);
  auto steps = flaxpp::training::checkpoint_steps(dir);
  if (f.resume) {
    if (steps.empty())
      throw std::runtime_error(
          "--resume: no checkpoint_<step>.msgpack in " + dir.string() +
          " (run without --resume first, or pass the right --ckpt-dir / --out-dir)");
    auto state = flaxpp::training::restore_checkpoint(dir, fresh);
    std::cerr << "resumed from " << flaxpp::training::checkpoint_path(dir, steps.back()).string()
              << " (step " << state.step << ")\n";
    return state;
  }
  if (!steps.empty()) {
    std::cerr << "fresh run: removing " << steps.size() << " old checkpoint(s) from "
              << dir.string() << " (pass --resume to continue them instead)\n";
    for (int64_t s : steps) fs::remove(flaxpp::training::checkpoint_path(dir, s));
  }
  return fresh;
}

// --time-limit and --stop-at.
class Deadline {
 public:
  explicit Deadline(const RunFlags& f) : limit_(f.time_limit), stop_at_(f.stop_at) {}
  // True when the run should stop before doing step `step` + 1.
  bool reached(int64_t step) const {
    if (stop_at_ > 0 && step >= stop_at_) return true;
    return limit_ > 0 && seconds_since(kProcessStart) >= limit_;
  }
  // Seconds left, or infinity without a time limit.
  double remaining() const {
    return limit_ > 0 ? std::max(0.0, limit_ - seconds_since(kProcessStart)) : 1.0 / 0.0;
  }

 private:
  double limit_;
  int64_t stop_at_;
};

// Smoothed seconds per step, for the ETA and throughput (the first step, which warms caches and
// allocators, is not counted).
class StepTimer {
 public:
  void tick(double seconds) {
    ++n_;
    if (n_ == 1) return;
    avg_ = n_ == 2 ? seconds : 0.9 * avg_ + 0.1 * seconds;
  }
  double seconds_per_step() const { return avg_; }
  double eta(int64_t steps_left, double time_left) const {
    return avg_ > 0 ? std::min(avg_ * static_cast<double>(steps_left), time_left) : 1.0 / 0.0;
  }

 private:
  int64_t n_ = 0;
  double avg_ = 0;
};

}  // namespace examples
