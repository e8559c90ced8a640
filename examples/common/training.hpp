// What both training examples share around their loop: threads, the checkpoint directory, timing.
//
//   examples::setup_runtime(dist.threads(cfg.run.threads));       // before any array work
//   auto state = examples::open_checkpoints(cfg.run, fresh_state, dist);  // newest with --resume
//   auto csv = examples::open_metrics(cfg.run, state.step, dist, {"step", "time", ...});
//   examples::Checkpoints checkpoints(cfg.run, dist, resumed_at);  ...  checkpoints.save(state);
//   examples::Deadline deadline(cfg.run, dist);  ...  if (deadline.reached(state.step)) break;
//   examples::report_stop(dist.log(), cfg.run, state.step);     // "stopped at step ..." if early
//
// (The flags are in cli.hpp, `dist` is the --distributed setup of distributed.hpp.)
// Checkpoints live in --ckpt-dir (default <out-dir>/ckpt). A fresh run (no --resume) removes the
// checkpoint_<step>.msgpack files an earlier run left there, saying so, so that a later --resume
// can never pick up a stale run; --resume restores the newest one and fails if there is none.
// With --distributed only rank 0 reads or removes checkpoints; the others get its state.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli.hpp"
#include "core/parallel.hpp"
#include "distributed.hpp"
#include "metrics.hpp"
#include "training/train_state.hpp"

namespace examples {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The process start, for --time-limit (taken when this header's statics initialise).
inline const Clock::time_point kProcessStart = Clock::now();

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

inline fs::path ckpt_dir_of(const RunFlags& f) {
  return f.ckpt_dir.empty() ? fs::path(f.out_dir) / "ckpt" : fs::path(f.ckpt_dir);
}

// Call before any array work: `threads` for flaxpp's one pool (core/parallel.hpp), which runs the
// matrix products, the kernels and the random draws; 0 leaves the default (FLAXPP_NUM_THREADS if
// set, else all cores). FLAXPP_NUM_THREADS is set to match, for whatever reads it later.
inline void setup_runtime(int threads) {
  if (threads <= 0) return;
  setenv("FLAXPP_NUM_THREADS", std::to_string(threads).c_str(), 1);
  flaxpp::set_num_threads(threads);
}

// With --resume: `fresh` restored from the newest checkpoint (throws if there is none). Without:
// removes stale checkpoints from the directory and returns `fresh`. With --distributed, rank 0
// does either and every rank gets rank 0's state (collective).
inline flaxpp::training::TrainState open_checkpoints(const RunFlags& f,
                                                     const flaxpp::training::TrainState& fresh,
                                                     const Distributed& dist) {
  if (!dist.is_root()) return dist.broadcast(fresh);
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
    return dist.broadcast(state);
  }
  if (!steps.empty()) {
    std::cerr << "fresh run: removing " << steps.size() << " old checkpoint(s) from "
              << dir.string() << " (pass --resume to continue them instead)\n";
    for (int64_t s : steps) fs::remove(flaxpp::training::checkpoint_path(dir, s));
  }
  return dist.broadcast(fresh);
}

// Rank 0's <out-dir>/metrics.csv (the directory created) with `columns`; with --resume it keeps
// the rows up to `step` (MetricsCsv). Other ranks get none.
inline std::optional<MetricsCsv> open_metrics(const RunFlags& f, int64_t step,
                                              const Distributed& dist,
                                              std::vector<std::string> columns) {
  if (!dist.is_root()) return std::nullopt;
  fs::create_directories(f.out_dir);
  return std::optional<MetricsCsv>(std::in_place, fs::path(f.out_dir) / "metrics.csv",
                                   std::move(columns),
                                   f.resume ? std::optional<int64_t>(step) : std::nullopt);
}

// Periodic checkpoints of a run into ckpt_dir_of(f), keeping --keep of them; with --distributed
// rank 0 writes them (every rank holds the same state).
class Checkpoints {
 public:
  Checkpoints(const RunFlags& f, const Distributed& dist, std::optional<int64_t> resumed_at)
      : dir_(ckpt_dir_of(f)),
        keep_(f.keep),
        root_(dist.is_root()),
        saved_at_(resumed_at.value_or(-1)) {}
  void save(const flaxpp::training::TrainState& state) {
    if (root_) flaxpp::training::save_checkpoint(dir_, state, state.step, keep_);
    saved_at_ = state.step;
  }
  // At the end of a run: saves unless the newest checkpoint is of this step already.
  void save_last(const flaxpp::training::TrainState& state) {
    if (saved_at_ != state.step) save(state);
  }

 private:
  fs::path dir_;
  int keep_;
  bool root_;
  int64_t saved_at_;
};

// --time-limit and --stop-at. With --distributed, rank 0's clock decides for every rank, so all
// of them stop after the same step.
class Deadline {
 public:
  Deadline(const RunFlags& f, const Distributed& dist)
      : limit_(f.time_limit), stop_at_(f.stop_at), dist_(dist) {}
  // True when the run should stop before doing step `step` + 1 (collective).
  bool reached(int64_t step) const {
    if (stop_at_ > 0 && step >= stop_at_) return true;  // the same on every rank
    if (limit_ <= 0) return false;
    return dist_.agree(seconds_since(kProcessStart) >= limit_);
  }
  // Seconds left, or infinity without a time limit.
  double remaining() const {
    return limit_ > 0 ? std::max(0.0, limit_ - seconds_since(kProcessStart)) : 1.0 / 0.0;
  }

 private:
  double limit_;
  int64_t stop_at_;
  const Distributed& dist_;
};

// After the loop: says why a run ended before --steps (and how to continue it).
inline void report_stop(std::ostream& log, const RunFlags& f, int64_t step) {
  if (step >= f.steps) return;
  log << "stopped at step " << step << " of " << f.steps
      << (f.stop_at > 0 && step >= f.stop_at ? " (--stop-at)" : " (--time-limit)")
      << "; continue with --resume\n";
}

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
