// --distributed in the training examples (examples/common/distributed.hpp): each example runs a
// few steps of a tiny configuration under `mpirun -np 2 --oversubscribe` and must
// - finish, with rank 0 alone writing files and progress (each rank runs in its own working
//   directory, so a file written by rank 1 would show up in rank1/);
// - log the losses (and evaluation) of the single-process run with the same global --batch, and
//   end with its parameters, up to float32 summation order (tolerances below);
// - resume from rank 0's checkpoint bit-for-bit, stop every rank on a --time-limit, and refuse a
//   --batch the ranks do not divide.
// Without MPI in the build (FLAXPP_MPIEXEC undefined) it checks that --distributed says so.
// Needs the Debian packages `fortunes` and `dataset-fashion-mnist`; 10 to 15 s on 2 loaded cores.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <sys/wait.h>

#include "serialization/serialization.hpp"
#include "tests/examples/example_runner.hpp"
#include "training/train_state.hpp"

using namespace flaxpp;
namespace fs = std::filesystem;

namespace {

using test::example;
using test::read_file;
using test::RunResult;
using test::shell;

fs::path fresh_dir(const std::string& name) {
  return test::fresh_dir("examples_distributed", name);
}

// One process in `dir`.
RunResult run_single(const std::string& binary, const std::string& args, const fs::path& dir) {
  return shell("cd '" + dir.string() + "' && '" + example(binary).string() + "' " + args,
               dir / "run.log");
}

#ifdef FLAXPP_MPIEXEC
// `binary --distributed args` on 2 ranks, rank r in dir/rank<r> (relative --out-dir paths land
// there). A deadlock fails the test through `timeout` instead of hanging ctest. Under ASan,
// OpenMPI's own unfreed allocations are suppressed (tests/mpi/lsan_openmpi.supp).
RunResult run_distributed(const std::string& binary, const std::string& args, const fs::path& dir,
                          const std::string& log_name = "mpirun.log") {
  fs::create_directories(dir / "rank0");
  fs::create_directories(dir / "rank1");
  const std::string lsan = "LSAN_OPTIONS='suppressions=" FLAXPP_SOURCE_DIR
                           "/tests/mpi/lsan_openmpi.supp:fast_unwind_on_malloc=0' ";
  return shell("cd '" + dir.string() + "' && " + lsan +
                   "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 '" +
                   FLAXPP_MPIEXEC + "' -np 2 --oversubscribe sh -c " +
                   "'cd rank$OMPI_COMM_WORLD_RANK && exec \"$0\" \"$@\"' '" +
                   example(binary).string() + "' --distributed " + args,
               dir / log_name);
}
#endif

#ifdef FLAXPP_MPIEXEC  // the comparisons below need two ranks
size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// metrics.csv as its header and rows of cells.
struct Csv {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  size_t column(const std::string& name) const {
    for (size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return i;
    FAIL("no column " << name);
    return 0;
  }
};

Csv read_csv(const fs::path& p) {
  Csv csv;
  std::ifstream in(p);
  std::string line;
  bool first = true;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) cells.push_back(cell);
    if (!line.empty() && line.back() == ',') cells.push_back("");
    if (first)
      csv.header = cells;
    else
      csv.rows.push_back(cells);
    first = false;
  }
  return csv;
}

// The largest relative difference between the two runs' `columns` (rows must be the same steps;
// a cell empty in one must be empty in the other).
double max_relative_diff(const Csv& a, const Csv& b, const std::vector<std::string>& columns) {
  REQUIRE(a.rows.size() == b.rows.size());
  REQUIRE(!a.rows.empty());
  double worst = 0;
  for (size_t r = 0; r < a.rows.size(); ++r) {
    CHECK(a.rows[r][0] == b.rows[r][0]);  // step
    for (const auto& name : columns) {
      const std::string &x = a.rows[r][a.column(name)], &y = b.rows[r][b.column(name)];
      CHECK_MESSAGE(x.empty() == y.empty(), name << " at step " << a.rows[r][0]);
      if (x.empty() || y.empty()) continue;
      double u = std::stod(x), v = std::stod(y);
      worst = std::max(worst, std::fabs(u - v) / std::max(std::fabs(u), 1e-12));
    }
  }
  return worst;
}

double max_abs_diff(const Tree& a, const Tree& b) {
  auto la = tree_leaves(a), lb = tree_leaves(b);
  REQUIRE(la.size() == lb.size());
  double m = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    REQUIRE(la[i].shape() == lb[i].shape());
    for (int64_t j = 0; j < la[i].size(); ++j)
      m = std::max(m, std::fabs(double(la[i].data<float>()[j]) - lb[i].data<float>()[j]));
  }
  return m;
}

// Every file below `dir`, relative to it, sorted.
std::vector<std::string> files_below(const fs::path& dir) {
  std::vector<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(fs::relative(e.path(), dir).string());
  std::sort(out.begin(), out.end());
  return out;
}

#endif

}  // namespace

TEST_CASE("--distributed is listed in --help") {
  fs::path tmp = fresh_dir("help");
  for (const char* binary : {"train_charlm", "train_fashion_mnist"}) {
    auto help = run_single(binary, "--help", tmp);
    CHECK(help.exit_code == 0);
    CHECK(help.output.find("--distributed") != std::string::npos);
  }
}

#ifndef FLAXPP_MPIEXEC
TEST_CASE("without MPI in the build, --distributed is a clear error") {
  fs::path tmp = fresh_dir("no_mpi");
  auto r = run_single("train_charlm", "--distributed --steps 1 --out-dir out", tmp);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("--distributed: this build has no MPI") != std::string::npos);
  CHECK(!fs::exists(tmp / "out"));
}
#else

// The examples' losses are float32 means over the global batch. On 2 ranks each rank averages its
// half and the allreduce averages the two halves: the same numbers summed in another order, about
// 1e-7 relative per step in the loss and in each gradient entry. Over these 12 steps the logged
// losses agree to the 6 significant digits metrics.csv prints (measured: identical) and the
// parameters to ~1e-6 (measured 0.7e-6 to 1.4e-6 for charlm at lr 1e-2 as the library changed,
// 3e-8 for fashion). Tolerances: 1e-4 relative on the losses and 1e-4 absolute on the O(0.1-1)
// parameters, room for Adam, whose m / sqrt(v) can turn the noise on a near-zero gradient entry
// into a full lr-sized step. A real data-parallel bug shows 1e-2 and more (measured with the
// gradients not averaged: losses 8e-2 and 3 relative, parameters 8e-2 and 1.3e-2), as would a
// wrong or overlapping shard or unsynchronised initial parameters.
constexpr double kLossTolerance = 1e-4, kParamTolerance = 1e-4;

TEST_CASE("train_charlm --distributed: 2 ranks follow 1 process, rank 0 writes, resume, limits") {
  const std::string tiny =
      "--dim 32 --depth 1 --seq-len 16 --batch 8 --threads 1 --steps 12 --log-every 2 "
      "--eval-every 4 --eval-windows 8 --final-eval-windows 96 --ckpt-every 4 --sample-len 8 "
      "--out-dir out";
  fs::path single = fresh_dir("charlm_single"), dist = fresh_dir("charlm_dist");
  auto one = run_single("train_charlm", tiny, single);
  INFO(one.output);
  REQUIRE(one.exit_code == 0);
  auto started = std::chrono::steady_clock::now();
  auto two = run_distributed("train_charlm", tiny, dist);
  double two_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  INFO(two.output);
  REQUIRE(two.exit_code == 0);

  // Rank 0 wrote everything a single process writes; rank 1 wrote nothing and printed nothing.
  CHECK(files_below(dist / "rank0" / "out") == files_below(single / "out"));
  CHECK(files_below(dist / "rank1").empty());
  CHECK(count(two.output, "data: ") == 1);
  CHECK(count(two.output, "final: step 12") == 1);
  CHECK(count(two.output, "12/12") == 1);  // the progress line of the last step
  CHECK(two.output.find("(4 windows on each of 2 ranks)") != std::string::npos);

  // The same run as one process with --batch 8, up to float32 summation order.
  Csv a = read_csv(single / "out" / "metrics.csv"),
      b = read_csv(dist / "rank0" / "out" / "metrics.csv");
  double loss_diff = max_relative_diff(a, b, {"train_loss", "val_bpc"});
  double param_diff = max_abs_diff(load(single / "out" / "params.json"),
                                   load(dist / "rank0" / "out" / "params.json"));
  MESSAGE("train_charlm, 2 ranks vs 1 process: losses " << loss_diff << " relative, parameters "
                                                        << param_diff << " absolute");
  CHECK(loss_diff < kLossTolerance);
  CHECK(param_diff < kParamTolerance);

  // Stop at step 6, resume (rank 0 alone has the checkpoint and broadcasts it): the end is the
  // uninterrupted 2-rank run's, bit for bit.
  fs::path split = fresh_dir("charlm_dist_split");
  auto first = run_distributed("train_charlm", tiny + " --stop-at 6", split, "first.log");
  INFO(first.output);
  REQUIRE(first.exit_code == 0);
  CHECK(count(first.output, "stopped at step 6 of 12 (--stop-at)") == 1);
  auto second = run_distributed("train_charlm", tiny + " --resume", split, "second.log");
  INFO(second.output);
  REQUIRE(second.exit_code == 0);
  CHECK(count(second.output, "(step 6)") == 1);  // "resumed from ... (step 6)", rank 0 only
  CHECK(read_file(split / "rank0" / "out" / "params.json") ==
        read_file(dist / "rank0" / "out" / "params.json"));
  CHECK(files_below(split / "rank1").empty());

  // A time limit far short of --steps: rank 0's clock decides, every rank stops after the same
  // step (ranks that disagreed would wait for each other until `timeout` killed them). The limit
  // is 3x the whole 12-step run above (at least 3 s), so that on a loaded machine the ranks are
  // still past start-up and training when it strikes.
  fs::path timed = fresh_dir("charlm_dist_time");
  int limit = std::max(3, static_cast<int>(std::ceil(3 * two_seconds)));
  auto limited = run_distributed(
      "train_charlm",
      "--dim 32 --depth 1 --seq-len 16 --batch 8 --threads 1 --steps 1000000 --time-limit " +
          std::to_string(limit) +
          " --eval-every 1000000 --ckpt-every 1000000 --final-eval-windows 16 --sample-len 0 "
          "--out-dir out",
      timed);
  INFO(limited.output);
  REQUIRE(limited.exit_code == 0);
  CHECK(count(limited.output, "of 1000000 (--time-limit)") == 1);
  auto steps = training::checkpoint_steps(timed / "rank0" / "out" / "ckpt");
  REQUIRE(steps.size() == 1);
  MESSAGE("--time-limit " << limit << ": both ranks stopped after step " << steps[0]);
  CHECK(steps[0] > 0);
  CHECK(count(limited.output, "final: step " + std::to_string(steps[0]) + ",") == 1);

  // The global batch must split evenly; rank 0 says so once and no rank writes anything.
  fs::path odd = fresh_dir("charlm_dist_odd");
  auto bad = run_distributed("train_charlm", "--batch 7 --out-dir out", odd);
  CHECK(bad.exit_code != 0);
  CHECK(count(bad.output, "--batch 7 is the global batch and must be divisible by the 2 ranks") ==
        1);
  CHECK(files_below(odd / "rank0").empty());
  CHECK(files_below(odd / "rank1").empty());
}

TEST_CASE("train_fashion_mnist --distributed: 2 ranks follow 1 process without stochastic depth") {
  // 96 training images in global batches of 16 (8 per rank): 6 steps per epoch, 2 epochs.
  const std::string tiny =
      "--train-limit 96 --test-limit 1200 --batch 16 --dim 8 --depth 1 --patch-size 7 "
      "--ff-mult 2 --threads 1 --log-every 2 --ckpt-every 4 --epochs 2 --out-dir out";
  fs::path single = fresh_dir("fashion_single"), dist = fresh_dir("fashion_dist");
  auto one = run_single("train_fashion_mnist", tiny, single);
  INFO(one.output);
  REQUIRE(one.exit_code == 0);
  auto two = run_distributed("train_fashion_mnist", tiny, dist);
  INFO(two.output);
  REQUIRE(two.exit_code == 0);
  CHECK(files_below(dist / "rank0" / "out") == files_below(single / "out"));
  CHECK(files_below(dist / "rank1").empty());
  CHECK(count(two.output, "final: step 12") == 1);

  // The test set (3 chunks of 500, 400 images) is split among the ranks and the sums reduced.
  Csv a = read_csv(single / "out" / "metrics.csv"),
      b = read_csv(dist / "rank0" / "out" / "metrics.csv");
  double loss_diff = max_relative_diff(a, b, {"train_loss", "train_acc", "test_loss", "test_acc"});
  double param_diff = max_abs_diff(load(single / "out" / "params.json"),
                                   load(dist / "rank0" / "out" / "params.json"));
  MESSAGE("train_fashion_mnist, 2 ranks vs 1 process: metrics "
          << loss_diff << " relative, parameters " << param_diff << " absolute");
  CHECK(loss_diff < kLossTolerance);
  CHECK(param_diff < kParamTolerance);

  // With stochastic depth each rank draws its own dropout keys (fold_in(key, rank)): it runs.
  fs::path drop = fresh_dir("fashion_dist_dropout");
  auto dropout = run_distributed("train_fashion_mnist", tiny + " --survival-prob 0.5", drop);
  INFO(dropout.output);
  CHECK(dropout.exit_code == 0);
  CHECK(count(dropout.output, "final: step 12") == 1);
}
#endif
