// Data-parallel training across processes with MPI, like jax.pmap + lax.pmean in Flax.
// Optional component: built when CMake finds MPI (-DFLAXPP_MPI=ON, the default then); link
// flaxpp::mpi and include <flaxpp/core/mpi/collectives.hpp>.
//
//   mpi::Environment env(argc, argv);                    // MPI_Init_thread ... MPI_Finalize
//   Tree params = mpi::broadcast(init_params, 0);        // every rank starts from rank 0's values
//   random::Key key = mpi::rank_key(base_key);           // fold_in(key, rank): per-rank streams
//   auto [lo, hi] = mpi::shard_range(global_batch, mpi::rank(), mpi::size());
//   Tree g = mpi::pmean(local_grads);                    // one fused allreduce for the whole tree
//
// pmean/psum flatten every leaf into one float32 buffer and call MPI_Allreduce once (not once
// per leaf). All leaves must be float32. Results are identical on every rank; for a fixed number
// of ranks the reduction order is fixed, so runs are reproducible.
// Errors throw std::runtime_error naming the MPI call and the error string.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "../random.hpp"
#include "../tree.hpp"

namespace flaxpp::mpi {

// Initialises MPI (if nobody has) and finalises it on destruction (if it initialised it).
class Environment {
 public:
  Environment(int& argc, char**& argv);
  Environment();
  ~Environment();
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

 private:
  bool owns_ = false;
};

bool initialized();
int rank();  // 0 when MPI is not initialised
int size();  // 1 when MPI is not initialised
void barrier();

Tree psum(const Tree& tree);
Tree pmean(const Tree& tree);
Array psum(const Array& x);
Array pmean(const Array& x);
// Every rank gets `root`'s tree (structure, shapes and dtypes must agree on every rank).
Tree broadcast(const Tree& tree, int root = 0);

// Element-wise sums over ranks in float64, e.g. evaluation totals that must match one process's
// up to float64 rounding.
std::vector<double> psum(std::vector<double> values);
// `root`'s bytes on every rank (any length; the others' input is ignored): for state that is not
// a float32 tree, such as a serialized train state with integer leaves.
std::vector<uint8_t> broadcast_bytes(std::vector<uint8_t> bytes, int root = 0);
// `root`'s flag on every rank: for decisions that depend on a clock.
bool broadcast_flag(bool flag, int root = 0);
// How many ranks run on this machine (MPI_COMM_TYPE_SHARED), to share out its cores; 1 when
// MPI is not initialised.
int ranks_on_this_host();
// Ends every rank of the job with `code` (MPI_Abort when initialised, else _Exit): a rank that
// failed must not leave the others waiting in their next collective.
[[noreturn]] void abort(int code);

// fold_in(key, rank): a different stream on each rank from one base key.
random::Key rank_key(random::Key key);
// The contiguous slice [begin, end) of n items owned by `rank` of `size` (sizes differ by at
// most one, lower ranks get the extra items).
std::pair<int64_t, int64_t> shard_range(int64_t n, int rank, int size);

}  // namespace flaxpp::mpi
