#include "core/gemm.hpp"

#include <cblas.h>

#include <algorithm>
#include <mutex>

#include "core/parallel.hpp"

// OpenBLAS's extension (its cblas.h declares it; weak so that another CBLAS still links).
extern "C" void openblas_set_num_threads(int num_threads) __attribute__((weak));

namespace flaxpp::gemm {

namespace {

constexpr double kParallelFlops = double(1 << 20);  // below this, one thread is faster
constexpr int64_t kAlign = 32;                      // block edges on multiples of the kernel tile

void blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // BLAS leaves C * beta; an empty product is zero
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    return;
  }
  if (k == 1 && alpha == 1.f && beta == 0.f) {
    // An outer product (per-example weight gradients under vmap): each entry is one float32
    // product added to +0, as BLAS computes it (it zeroes C, then adds), but written once.
    for (int64_t i = 0; i < m; ++i) {
      float ai = ta ? a[i] : a[i * lda];
      float* ci = c + i * ldc;
      if (tb)
        for (int64_t j = 0; j < n; ++j) ci[j] = 0.f + ai * b[j * ldb];
      else
        for (int64_t j = 0; j < n; ++j) ci[j] = 0.f + ai * b[j];
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

// [lo, hi) of block `i` of `parts` over `len` items, edges on multiples of kAlign.
std::pair<int64_t, int64_t> block(int64_t len, int64_t parts, int64_t i) {
  int64_t tiles = (len + kAlign - 1) / kAlign;
  int64_t lo = std::min(len, tiles * i / parts * kAlign),
          hi = std::min(len, tiles * (i + 1) / parts * kAlign);
  return {lo, hi};
}

}  // namespace

void use_single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
  });
}

void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  use_single_threaded_blas();
  int64_t threads = num_threads();
  double flops = 2.0 * double(m) * double(n) * double(k);
  bool by_rows = m >= n;
  int64_t len = by_rows ? m : n;
  int64_t parts = std::min(threads, (len + kAlign - 1) / kAlign);
  if (parts <= 1 || flops < kParallelFlops)
    return blas(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      auto [lo, hi] = block(len, parts, p);
      if (lo >= hi) continue;
      if (by_rows)  // rows lo..hi of op(A): row offset, or column offset when A is read transposed
        blas(ta, tb, hi - lo, n, k, alpha, ta ? a + lo : a + lo * lda, lda, b, ldb, beta,
             c + lo * ldc, ldc);
      else  // columns lo..hi of op(B)
        blas(ta, tb, m, hi - lo, k, alpha, a, lda, tb ? b + lo * ldb : b + lo, ldb, beta, c + lo,
             ldc);
    }
  });
}

void sgemm_batched(int64_t count, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a,
                   int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b,
                   float* c, int64_t ldc, int64_t stride_c) {
  use_single_threaded_blas();
  if (count <= 0) return;
  double flops = 2.0 * double(m) * double(n) * double(k);
  if (count < num_threads() || flops * double(count) < kParallelFlops) {
    for (int64_t i = 0; i < count; ++i)
      sgemm(ta, tb, m, n, k, 1.f, a + i * stride_a, lda, b + i * stride_b, ldb, 0.f,
            c + i * stride_c, ldc);
    return;
  }
  parallel_for(count, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      blas(ta, tb, m, n, k, 1.f, a + i * stride_a, lda, b + i * stride_b, ldb, 0.f,
           c + i * stride_c, ldc);
  });
}

}  // namespace flaxpp::gemm
