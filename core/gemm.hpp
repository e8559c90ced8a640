// Matrix products for every primitive, on OpenBLAS sgemm driven by flaxpp's own thread pool.
//
//   gemm::sgemm(false, true, m, n, k, 1.f, a, lda, b, ldb, 0.f, c, ldc);  // C = A B^T
//
// Row-major C (m, n) = alpha op(A) (m, k) op(B) (k, n) + beta C, op = transpose where the flag is
// set (A is stored (k, m) then, B (n, k)), leading dimensions as cblas_sgemm's.
// Why not OpenBLAS's threads: the pthread build busy-waits (sched_yield) between products, so
// its pool and ours fought over the two cores (11% of a profile went to the scheduler). OpenBLAS
// is set to one thread the first time a product runs; large products are cut into row or column
// blocks, one single-threaded sgemm per pool thread; small ones (< 2^20 flops) run on the
// calling thread. Each output element is computed by one sgemm over the full k, so a result is
// the same for any block split up to the kernel's own accumulation order (deterministic for a
// fixed thread count).
#pragma once

#include <cstdint>

namespace flaxpp::gemm {

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// `count` independent products C_i = op(A_i) op(B_i), with operand i at a + i*stride_a (a stride
// of 0 reuses one operand). Small products are spread over the pool, one whole product per task.
void sgemm_batched(int64_t count, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                   const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb,
                   int64_t stride_b, float* c, int64_t ldc, int64_t stride_c);

// OpenBLAS's own thread count is forced to 1 by the first product; this does it now.
void use_single_threaded_blas();

}  // namespace flaxpp::gemm
