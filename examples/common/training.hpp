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
// Checkpoints live in --ckpt-dir (default <out-dir>/ckpt). A run holds an flock'ed `.lock` in
// --out-dir and in --ckpt-dir (with its pid) until it exits, so a second run on the same
// directory fails at once naming the first one's pid. At start it removes the temporary files a
// killed save left. A fresh run (no --resume) on a directory holding checkpoints refuses unless
// --overwrite is given; then the old checkpoints move to <ckpt-dir>/replaced/ and metrics.csv to
// metrics.csv.replaced, and both are deleted only once the new run has saved its first
// checkpoint. --resume restores the newest checkpoint that verifies (saying which newer ones it
// skipped and why), --resume-step N that step's; both fail if there is none.
// With --distributed only rank 0 locks, reads or moves checkpoints; the others get its state.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/file.h>

#include "cli.hpp"
#include "core/parallel.hpp"
#include "distributed.hpp"
#include "metrics.hpp"
#include "serialization/serialization.hpp"
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

// Takes `dir`/.lock (flock, exclusive, non-blocking) for the rest of the process and writes the
// pid into it; if another process holds it, throws naming that pid. `flag` names the option.
inline void lock_dir(const fs::path& dir, const std::string& flag) {
  fs::create_directories(dir);
  const fs::path lock = dir / ".lock";
  int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    throw std::runtime_error(flag + " " + dir.string() + ": cannot open " + lock.string() + ": " +
                             std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    std::ifstream in(lock);
    std::string pid;
    std::getline(in, pid);
    ::close(fd);
    if (err == EWOULDBLOCK)
      throw std::runtime_error(flag + " " + dir.string() + ": another run (pid " +
                               (pid.empty() ? "unknown" : pid) +
                               ") is using this directory (it holds " + lock.string() +
                               "); wait for it to end, or choose another " + flag);
    throw std::runtime_error(flag + " " + dir.string() + ": cannot lock " + lock.string() + ": " +
                             std::strerror(err));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::write(fd, pid.data(), pid.size()) < 0) {
    // The lock holds without the pid in it; a second run then reports "pid unknown".
  }
  // fd stays open, and the lock held, until the process exits.
}

// What --overwrite moved aside: deleted once the new run has saved a checkpoint.
inline std::vector<fs::path>& replaced_paths() {
  static std::vector<fs::path> paths;
  return paths;
}

// Moves the checkpoints of `steps` (and their sidecars) into dir/replaced/, and metrics.csv to
// metrics.csv.replaced; what an earlier --overwrite run moved there and never replaced (it
// saved nothing) is older than what is moved now, and goes.
inline void move_old_run_aside(const RunFlags& f, const fs::path& dir,
                               const std::vector<int64_t>& steps, std::ostream& log) {
  const fs::path aside = dir / "replaced", metrics = fs::path(f.out_dir) / "metrics.csv",
                 metrics_aside = fs::path(f.out_dir) / "metrics.csv.replaced";
  fs::remove_all(aside);
  fs::create_directories(aside);
  for (int64_t s : steps) {
    fs::path p = flaxpp::training::checkpoint_path(dir, s);
    fs::rename(p, aside / p.filename());
    std::error_code ec;
    fs::path meta = flaxpp::meta_path(p);
    if (fs::exists(meta, ec)) fs::rename(meta, aside / meta.filename());
  }
  replaced_paths().push_back(aside);
  std::error_code ec;
  if (fs::exists(metrics, ec)) {
    fs::rename(metrics, metrics_aside);
    replaced_paths().push_back(metrics_aside);
  }
  log << "--overwrite: moved " << steps.size() << " checkpoint(s) of the earlier run to "
      << aside.string() << " (deleted once this run has saved a checkpoint)\n";
}

// Locks the run's directories, removes stale temporary files, then: with --resume, `fresh`
// restored from the newest checkpoint that verifies (or --resume-step's); without, `fresh`,
// after refusing a directory with checkpoints unless --overwrite (see the top of this file).
// With --distributed, rank 0 does all this and every rank gets rank 0's state (collective).
inline flaxpp::training::TrainState open_checkpoints(const RunFlags& f,
                                                     const flaxpp::training::TrainState& fresh,
                                                     const Distributed& dist) {
  if (!dist.is_root()) return dist.broadcast(fresh);
  fs::path dir = ckpt_dir_of(f);
  if (f.resume && f.overwrite)
    throw std::runtime_error(
        "--overwrite starts afresh; it cannot go with --resume or "
        "--resume-step");
  lock_dir(f.out_dir, "--out-dir");
  std::error_code ec;
  fs::create_directories(dir);
  if (!fs::equivalent(dir, f.out_dir, ec)) lock_dir(dir, "--ckpt-dir");
  for (const fs::path& d : {fs::path(f.out_dir), dir})
    for (const auto& p : flaxpp::training::remove_stale_temp_files(d))
      std::cerr << "removed " << p.string() << " (left by a save that was killed)\n";
  auto steps = flaxpp::training::checkpoint_steps(dir);
  if (f.resume) {
    if (steps.empty())
      throw std::runtime_error(
          "--resume: no checkpoint_<step>.msgpack in " + dir.string() +
          " (run without --resume first, or pass the right --ckpt-dir / --out-dir)");
    if (f.resume_step >= 0) {
      auto state = flaxpp::training::restore_checkpoint(dir, fresh, f.resume_step);
      std::cerr << "resumed from " << flaxpp::training::checkpoint_path(dir, f.resume_step).string()
                << " (step " << state.step << ", --resume-step)\n";
      return dist.broadcast(state);
    }
    flaxpp::training::RestoreReport report;
    auto state = flaxpp::training::restore_newest_valid(dir, fresh, report);
    for (const auto& [path, why] : report.skipped)
      std::cerr << "--resume: skipped " << path.string() << ": " << why << "\n";
    std::cerr << "resumed from " << report.restored.string() << " (step " << state.step << ")\n";
    return dist.broadcast(state);
  }
  if (!steps.empty()) {
    if (!f.overwrite)
      throw std::runtime_error(
          "--out-dir " + f.out_dir + ": " + dir.string() + " holds " +
          std::to_string(steps.size()) + " checkpoint(s) of an earlier run (steps " +
          std::to_string(steps.front()) + " to " + std::to_string(steps.back()) +
          "); pass --resume to continue it, or --overwrite to start afresh (the old run is "
          "kept until this one has saved a checkpoint)");
    move_old_run_aside(f, dir, steps, std::cerr);
  } else if (f.overwrite) {  // an earlier --overwrite run was stopped before it saved anything
    for (const fs::path& p : {dir / "replaced", fs::path(f.out_dir) / "metrics.csv.replaced"})
      if (fs::exists(p, ec)) replaced_paths().push_back(p);
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
    if (root_) {
      flaxpp::training::save_checkpoint(dir_, state, state.step, keep_);
      // The new run has a checkpoint now: what --overwrite kept of the old one can go.
      for (const fs::path& p : replaced_paths()) fs::remove_all(p);
      replaced_paths().clear();
    }
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
