// One small thread pool for elementwise and reduction kernels.
//
//   parallel_for(n, /*grain=*/1 << 15, [&](int64_t begin, int64_t end) { ... });
//
// The range is cut into at most num_threads() contiguous chunks of at least `grain` items; the
// calling thread runs the first chunk, pool workers the rest, and the call returns when all are
// done. Chunk boundaries depend only on n, grain and the thread count, so a reduction that sums
// per chunk and then combines the chunk results in order is deterministic for a fixed count.
// This is the only pool: matrix products run on it too (core/gemm.hpp sets OpenBLAS to one
// thread), so no two pools fight over the cores. Idle workers spin for FLAXPP_SPIN_US
// microseconds (default 100) and then sleep on a condition variable, so back-to-back kernels hand
// over cheaply and an idle process uses no CPU. Nested calls from inside a chunk run serially.
// The count defaults to the number of cores; FLAXPP_NUM_THREADS or set_num_threads() change it
// (with several processes per machine, e.g. MPI ranks, give each cores / ranks threads).
#pragma once

#include <cstdint>
#include <functional>

namespace flaxpp {

int num_threads();
void set_num_threads(int n);  // >= 1; applies to later calls
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace flaxpp
