// gemm::sgemm / sgemm_batched against a double-precision reference, across the block split
// (1-4 pool threads, sizes on both sides of the parallel threshold and of the 32-wide block edge,
// every transpose combination, alpha/beta, leading dimensions wider than the matrix).
// Tolerance: float32 products of k terms in [-1, 1]; |error| <= k * 2^-23 * max|partial sum|, so
// 1e-5 relative to k covers every case here with margin.
#include "core/gemm.hpp"

#include <cblas.h>

#include <cmath>
#include <cstring>
#include <vector>

#include <doctest/doctest.h>

#include "core/parallel.hpp"
#include "core/random.hpp"

using namespace flaxpp;

namespace {
std::vector<float> uniform(uint32_t seed, int64_t n) {
  return random::uniform(random::PRNGKey(seed), {n}, -1.f, 1.f).to_float();
}
// C = alpha op(A) op(B) + beta C in double, row-major with leading dimensions.
void reference(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
               const std::vector<float>& a, int64_t lda, const std::vector<float>& b, int64_t ldb,
               float beta, std::vector<double>& c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += double(ta ? a[p * lda + i] : a[i * lda + p]) *
             double(tb ? b[j * ldb + p] : b[p * ldb + j]);
      c[i * ldc + j] = alpha * s + (beta == 0.f ? 0.0 : beta * c[i * ldc + j]);
    }
}
struct ThreadCount {
  int saved = num_threads();
  explicit ThreadCount(int n) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(saved); }
};
}  // namespace

TEST_CASE("sgemm equals the reference for every transpose, split and thread count") {
  struct Case {
    int64_t m, n, k;
  };
  const Case cases[] = {{1, 1, 1},     {5, 7, 3},      {33, 65, 17}, {200, 96, 64},
                        {96, 200, 64}, {130, 257, 70}, {64, 64, 0}};
  for (int threads : {1, 2, 3, 4}) {
    ThreadCount tc(threads);
    for (auto [m, n, k] : cases)
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (float beta : {0.f, 1.f, -0.5f}) {
            CAPTURE(threads);
            CAPTURE(m);
            CAPTURE(n);
            CAPTURE(k);
            CAPTURE(ta);
            CAPTURE(tb);
            CAPTURE(beta);
            int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
            auto a = uniform(1, (ta ? k : m) * lda + 1), b = uniform(2, (tb ? n : k) * ldb + 1);
            auto c0 = uniform(3, m * ldc + 1);
            std::vector<float> c = c0;
            std::vector<double> want(c0.begin(), c0.end());
            gemm::sgemm(ta, tb, m, n, k, 0.75f, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
            reference(ta, tb, m, n, k, 0.75f, a, lda, b, ldb, beta, want, ldc);
            double worst = 0;
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = 0; j < n; ++j)
                worst = std::max(worst, std::fabs(c[i * ldc + j] - want[i * ldc + j]));
            CHECK(worst <= 1e-5 * double(std::max<int64_t>(k, 1)) + 1e-6);
            for (int64_t i = 0; i < m; ++i)  // the padding between rows is never written
              for (int64_t j = n; j < ldc && i * ldc + j < int64_t(c.size()); ++j)
                REQUIRE(c[i * ldc + j] == c0[i * ldc + j]);
          }
  }
}

TEST_CASE("sgemm is deterministic for a fixed thread count, and close across counts") {
  // Each output element is one sgemm over the full k, but OpenBLAS's edge kernels (rows left over
  // from its 16-row tile) sum in another order, so 1 and 2 threads may differ in the last bits.
  int64_t m = 300, n = 180, k = 96;
  auto a = uniform(4, m * k), b = uniform(5, k * n);
  auto run = [&](int threads) {
    ThreadCount tc(threads);
    std::vector<float> c(m * n);
    gemm::sgemm(false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c.data(), n);
    return c;
  };
  auto c1 = run(1), c2 = run(2);
  CHECK(run(2) == c2);
  CHECK(run(1) == c1);
  double worst = 0;
  for (size_t i = 0; i < c1.size(); ++i) worst = std::max(worst, double(std::fabs(c1[i] - c2[i])));
  CHECK(worst <= 1e-5 * double(k));
}

TEST_CASE("sgemm_batched: shared and per-item operands, transposed A") {
  for (int threads : {1, 2, 3}) {
    ThreadCount tc(threads);
    for (int64_t count : {1, 2, 5, 16}) {
      CAPTURE(threads);
      CAPTURE(count);
      int64_t m = 40, n = 72, k = 48;
      auto a = uniform(6, m * k), b = uniform(7, count * m * n);
      std::vector<float> c(count * k * n, 123.f);
      // C_i (k, n) = A^T (k, m) @ B_i (m, n), A shared (stride 0)
      gemm::sgemm_batched(count, true, false, k, n, m, a.data(), k, 0, b.data(), n, m * n, c.data(),
                          n, k * n);
      double worst = 0;
      for (int64_t i = 0; i < count; ++i) {
        std::vector<float> bi(b.begin() + i * m * n, b.begin() + (i + 1) * m * n);
        std::vector<double> want(k * n);
        reference(true, false, k, n, m, 1.f, a, k, bi, n, 0.f, want, n);
        for (int64_t q = 0; q < k * n; ++q)
          worst = std::max(worst, std::fabs(c[i * k * n + q] - want[q]));
      }
      CHECK(worst <= 1e-5 * double(m));
    }
  }
}

TEST_CASE("k = 1 products (outer products) equal cblas_sgemm bit for bit, signed zeros included") {
  // The shortcut writes each entry once; BLAS zeroes C and adds: +0 where a product is -0.
  const int64_t m = 5, n = 7;
  std::vector<float> a(m), b(n);
  for (int64_t i = 0; i < m; ++i) a[i] = (i == 2) ? -0.f : 0.37f * static_cast<float>(i) - 1.1f;
  for (int64_t j = 0; j < n; ++j) b[j] = (j == 3) ? 0.f : 1.3f - 0.29f * static_cast<float>(j);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      std::vector<float> got(m * n, 42.f), want(m * n, 42.f);
      // A is m x 1 (lda 1) or, read transposed, 1 x m (lda m); B likewise.
      int64_t lda = ta ? m : 1, ldb = tb ? 1 : n;
      flaxpp::gemm::sgemm(ta, tb, m, n, 1, 1.f, a.data(), lda, b.data(), ldb, 0.f, got.data(), n);
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                  n, 1, 1.f, a.data(), static_cast<int>(lda), b.data(), static_cast<int>(ldb), 0.f,
                  want.data(), n);
      CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
    }
}
