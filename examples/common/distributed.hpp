// --distributed for the training examples: data parallelism over MPI ranks, the jax.pmap +
// lax.pmean pattern on one global batch, built on flaxpp::mpi (core/mpi/collectives.hpp).
//
//   int main(int argc, char** argv) {
//     ... CLI11_PARSE(app, argc, argv);
//     return examples::run_main("train_x", cfg.run.distributed,
//                               [&](examples::Distributed& dist) { return run(cfg, dist); });
//   }
//   examples::setup_runtime(dist.threads(cfg.run.threads));
//   auto [lo, hi] = dist.batch_rows(global_batch);   // this rank's rows; UsageError unless divisible
//   state = dist.broadcast(state);                   // rank 0's whole TrainState on every rank
//   Tree mean = dist.pmean(Tree{{"grads", g}, {"loss", loss}});   // one fused allreduce per step
//   random::Key k = dist.rank_key(state.step_rng()); // fold_in(key, rank): per-rank dropout
//   if (dist.agree(deadline_passed)) break;          // rank 0 decides, every rank follows
//   auto [c0, c1] = dist.shard(chunks);  ...  auto totals = dist.sum({loss, correct});
//   dist.log() << "...";                             // std::cerr on rank 0, nowhere elsewhere
//   if (dist.is_root()) { /* write files */ }
//
// Without --distributed every call is the single-process identity: no MPI call and the same
// arithmetic, so a run is bit-identical to one from before --distributed existed. With it:
// - MPI is initialised here, after the flags are parsed, and finalised when run_main returns;
// - every rank draws the same global batch (the same key) and keeps its rows [lo, hi), so N ranks
//   follow the single-process run with the same --batch up to float32 summation order (dropout
//   aside: rank_key gives each rank its own stream, as jax.random.fold_in(key, axis_index));
// - broadcast, pmean, sum and agree are collective: every rank must call them, in the same order
//   (the other members are local).
// Errors: a build without MPI (no FLAXPP_HAVE_MPI) throws UsageError for --distributed.
// UsageError is thrown alike on every rank before any collective, so run_main lets rank 0 report
// it and every rank exit 1; any other exception is printed with its rank and aborts the whole job
// (MPI_Abort), since the other ranks would otherwise wait forever in their next collective.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#ifdef FLAXPP_HAVE_MPI
#include "core/mpi/collectives.hpp"
#endif
#include "core/random.hpp"
#include "core/tree.hpp"
#include "serialization/serialization.hpp"
#include "training/train_state.hpp"

namespace examples {

// A flag combination that cannot run; raised identically on every rank.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Distributed {
 public:
  explicit Distributed(bool enabled) : enabled_(enabled) {
    if (!enabled) {
      const char* n = std::getenv("OMPI_COMM_WORLD_SIZE");
      if (n && std::atoi(n) > 1)
        std::cerr << "warning: started by mpirun with " << n << " ranks but without --distributed: "
                  << "every rank trains its own model into the same files\n";
      return;
    }
#ifdef FLAXPP_HAVE_MPI
    env_.emplace();
    rank_ = flaxpp::mpi::rank();
    size_ = flaxpp::mpi::size();
    host_size_ = flaxpp::mpi::ranks_on_this_host();  // to share out this machine's cores
#else
    throw UsageError(
        "--distributed: this build has no MPI (flaxpp::mpi); install libopenmpi-dev and "
        "openmpi-bin, reconfigure with -DFLAXPP_MPI=ON and rebuild, or run without --distributed");
#endif
  }
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  bool enabled() const { return enabled_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }

  // Progress and messages: std::cerr on rank 0, a sink on the other ranks.
  std::ostream& log() const {
    static std::ostream sink(nullptr);  // no buffer: every write is dropped
    return is_root() ? std::cerr : sink;
  }

  // Threads per process: --threads if given; with --distributed and FLAXPP_NUM_THREADS unset,
  // this host's cores shared out among its ranks (two ranks on two cores each starting two threads
  // would only fight over them); otherwise 0, the defaults. (OPENBLAS_NUM_THREADS plays no part:
  // products run on flaxpp's pool, with OpenBLAS set to one thread.)
  int threads(int requested) const {
    if (requested > 0 || !enabled_) return requested;
    if (std::getenv("FLAXPP_NUM_THREADS")) return 0;
    int cores = static_cast<int>(std::thread::hardware_concurrency());
    return std::max(1, cores / std::max(1, host_size_));
  }

  // This rank's rows [lo, hi) of a global batch; UsageError unless the ranks divide it evenly
  // (uneven shards would weigh the rows of the smaller ones more in the mean of the means).
  std::pair<int64_t, int64_t> batch_rows(int64_t global_batch) const {
    if (global_batch % size_ != 0)
      throw UsageError("--batch " + std::to_string(global_batch) + " is the global batch and " +
                       "must be divisible by the " + std::to_string(size_) +
                       " ranks; pick a multiple of " + std::to_string(size_));
    return shard(global_batch);
  }

  // This rank's contiguous part [begin, end) of n items (sizes differ by at most one).
  std::pair<int64_t, int64_t> shard(int64_t n) const {
    int64_t base = n / size_, extra = n % size_;
    int64_t begin = rank_ * base + std::min<int64_t>(rank_, extra);
    return {begin, begin + base + (rank_ < extra ? 1 : 0)};
  }

  // fold_in(key, rank) with --distributed (even on one rank), `key` itself without.
  flaxpp::random::Key rank_key(flaxpp::random::Key key) const {
    return enabled_ ? flaxpp::random::fold_in(key, static_cast<uint32_t>(rank_)) : key;
  }

  // The mean over ranks of every leaf (float32), as one MPI_Allreduce.
  flaxpp::Tree pmean(const flaxpp::Tree& tree) const {
#ifdef FLAXPP_HAVE_MPI
    if (size_ > 1) return flaxpp::mpi::pmean(tree);
#endif
    return tree;
  }

  // Element-wise sums over ranks in float64: for evaluation totals, which then match the
  // single-process ones up to float64 rounding.
  std::vector<double> sum(std::vector<double> v) const {
#ifdef FLAXPP_HAVE_MPI
    if (size_ > 1) return flaxpp::mpi::psum(std::move(v));
#endif
    return v;
  }

  // Rank 0's `flag` on every rank: for decisions that depend on a clock.
  bool agree(bool flag) const {
#ifdef FLAXPP_HAVE_MPI
    if (size_ > 1) return flaxpp::mpi::broadcast_flag(flag);
#endif
    return flag;
  }

  // Rank 0's whole train state (step, params, opt_state, rng) on every rank. It travels as
  // rank 0's checkpoint bytes (Flax msgpack of state_dict()), so integer leaves (step, the
  // optimizer's count, the key) arrive exactly; flaxpp::mpi::broadcast takes float32 only.
  flaxpp::training::TrainState broadcast(const flaxpp::training::TrainState& state) const {
#ifdef FLAXPP_HAVE_MPI
    if (size_ > 1) {
      std::vector<uint8_t> bytes;
      if (is_root()) bytes = flaxpp::to_bytes(state.state_dict());
      bytes = flaxpp::mpi::broadcast_bytes(std::move(bytes));
      if (!is_root()) return state.with_state_dict(flaxpp::from_bytes(state.state_dict(), bytes));
    }
#endif
    return state;
  }

  // Ends every rank of the job with `code`.
  [[noreturn]] void abort(int code) const {
#ifdef FLAXPP_HAVE_MPI
    if (size_ > 1) flaxpp::mpi::abort(code);
#endif
    std::_Exit(code);
  }

 private:
#ifdef FLAXPP_HAVE_MPI
  std::optional<flaxpp::mpi::Environment> env_;  // first member destroyed last: MPI_Finalize
#endif
  bool enabled_;
  int rank_ = 0, size_ = 1, host_size_ = 1;
};

// Runs `body(dist)` and turns exceptions into exit codes: "<program>: <message>" and 1; under
// --distributed on several ranks, a UsageError is reported by rank 0 only and any other error
// names its rank and aborts every rank (see the top of this file).
template <class Body>
int run_main(const char* program, bool distributed, Body&& body) {
  std::optional<Distributed> dist;
  try {
    dist.emplace(distributed);
    return body(*dist);
  } catch (const UsageError& e) {
    if (!dist || dist->is_root()) std::cerr << program << ": " << e.what() << '\n';
    return 1;
  } catch (const std::exception& e) {
    if (dist && dist->size() > 1) {
      std::cerr << program << " (rank " << dist->rank() << " of " << dist->size()
                << "): " << e.what() << '\n'
                << std::flush;
      dist->abort(1);
    }
    std::cerr << program << ": " << e.what() << '\n';
    return 1;
  }
}

}  // namespace examples
