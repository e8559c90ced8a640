// Fused primitives (see ops_fused.hpp): forward kernel, fused backward kernel, and the composite
// definition that the backward falls back to (through vjp) when it is itself differentiated.
#include "core/ops_fused.hpp"

#include <cmath>
#include <map>
#include <mutex>
#include <numbers>
#include <vector>

#include "core/autodiff.hpp"
#include "core/gemm.hpp"
#include "core/ops.hpp"
#include "core/parallel.hpp"
#include "core/primitive.hpp"
#include "core/simd/kernels.hpp"

namespace flaxpp::fused {

using autodiff::needs_grad;
using autodiff::record;

namespace {

const float kGeluK = static_cast<float>(std::sqrt(2.0 / std::numbers::pi));
constexpr float kGeluC = 0.044715f;
constexpr int64_t kPiece = 1024;  // softmax exps summed a piece at a time, on the stack

void require_float(const Array& a, const char* op, const char* what) {
  if (!a.is_float())
    throw std::invalid_argument(std::string(op) + ": " + what + " must be float32, got " +
                                dtype_name(a.dtype()) + " " + to_string(a.shape()));
}

// Through vjp of the composite: a backward pass that can itself be differentiated.
template <class F, class... A>
Grads composite_vjp(const Array& g, F f, const A&... args) {
  auto [y, pullback] = vjp(f, args...);
  return std::apply([](const auto&... c) { return Grads{c...}; }, pullback(g));
}

}  // namespace

// ---- composites ------------------------------------------------------------------------------

Array composite::dense(const Array& x, const Array& kernel, const std::optional<Array>& bias) {
  Array y = jnp::matmul(x, kernel);
  return bias ? y + *bias : y;
}

Array composite::gelu_tanh(const Array& x) {
  Array cdf = 0.5f * (1.f + jnp::tanh(kGeluK * (x + kGeluC * (x * x * x))));
  return x * cdf;
}

Array composite::layer_norm(const Array& x, const std::optional<Array>& scale,
                            const std::optional<Array>& bias, float epsilon, bool clip_variance) {
  Array mean = jnp::mean(x, {-1}, true);
  Array mean2 = jnp::mean(x * x, {-1}, true);
  Array var = mean2 - mean * mean;
  if (clip_variance) var = jnp::maximum(var, Array(0.f));
  Array mul = jnp::rsqrt(var + epsilon);
  if (scale) mul = mul * *scale;
  Array y = (x - mean) * mul;
  return bias ? y + *bias : y;
}

Array composite::softmax_cross_entropy_with_integer_labels(const Array& logits,
                                                           const Array& labels) {
  Array picked = jnp::squeeze(jnp::take_along_axis(logits, jnp::expand_dims(labels, -1), -1), {-1});
  return jnp::logsumexp(logits, {-1}) - picked;
}

// ---- dense -----------------------------------------------------------------------------------

Array dense(const Array& x, const Array& kernel, const std::optional<Array>& bias) {
  require_float(x, "dense", "input");
  require_float(kernel, "dense", "kernel");
  if (x.ndim() == 0 || kernel.ndim() != 2 || x.shape().back() != kernel.shape()[0])
    throw std::invalid_argument("dense: contracting dims differ: " + to_string(x.shape()) + " @ " +
                                to_string(kernel.shape()));
  int64_t in = kernel.shape()[0], out = kernel.shape()[1],
          rows = x.size() / std::max<int64_t>(1, in);
  if (bias && (bias->ndim() != 1 || bias->shape()[0] != out))
    throw std::invalid_argument("dense: bias of shape " + to_string(bias->shape()) +
                                " for kernel " + to_string(kernel.shape()));
  Shape oshape = x.shape();
  oshape[oshape.size() - 1] = out;
  Array y = Array::empty(oshape, DType::float32);
  float* py = y.mutable_data<float>();
  if (bias) {
    const float* pb = bias->data<float>();
    parallel_for(rows, 64, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) std::copy(pb, pb + out, py + r * out);
    });
  }
  if (rows && out)
    gemm::sgemm(false, false, rows, out, in, 1.f, x.data<float>(), in, kernel.data<float>(), out,
                bias ? 1.f : 0.f, py, out);
  if (!(bias ? needs_grad(x, kernel, *bias) : needs_grad(x, kernel))) return y;
  std::vector<const Array*> inputs{&x, &kernel};
  if (bias) inputs.push_back(&*bias);
  return record(
      "dense", y, inputs,
      [x, kernel, bias, rows, in, out](const Array& g, const Array&, const Need& need) {
        if (autodiff::is_recording()) {
          if (bias)
            return composite_vjp(
                g,
                [](const Array& a, const Array& k, const Array& b) {
                  return composite::dense(a, k, b);
                },
                x, kernel, *bias);
          return composite_vjp(
              g,
              [](const Array& a, const Array& k) { return composite::dense(a, k, std::nullopt); },
              x, kernel);
        }
        Grads r(bias ? 3 : 2);
        const float* pg = g.data<float>();
        if (need[0]) {  // dx = g @ kernel^T
          Array dx = Array::empty(x.shape(), DType::float32);
          if (rows && in)
            gemm::sgemm(false, true, rows, in, out, 1.f, pg, out, kernel.data<float>(), out, 0.f,
                        dx.mutable_data<float>(), in);
          r[0] = dx;
        }
        if (need[1]) {  // dkernel = x^T @ g
          Array dk = Array::empty(kernel.shape(), DType::float32);
          if (in && out)
            gemm::sgemm(true, false, in, out, rows, 1.f, x.data<float>(), in, pg, out, 0.f,
                        dk.mutable_data<float>(), out);
          r[1] = dk;
        }
        if (bias && need[2]) {  // dbias = column sums of g, accumulated in double per column block
          Array db = Array::empty({out}, DType::float32);
          float* pd = db.mutable_data<float>();
          parallel_for(out, 256, [&](int64_t lo, int64_t hi) {
            std::vector<double> acc(static_cast<size_t>(hi - lo), 0.0);
            for (int64_t row = 0; row < rows; ++row) {
              const float* gr = pg + row * out;
              for (int64_t c = lo; c < hi; ++c) acc[static_cast<size_t>(c - lo)] += gr[c];
            }
            for (int64_t c = lo; c < hi; ++c)
              pd[c] = static_cast<float>(acc[static_cast<size_t>(c - lo)]);
          });
          r[2] = db;
        }
        return r;
      });
}

// ---- gelu (tanh approximation) -----------------------------------------------------------------

Array gelu_tanh(const Array& x) {
  require_float(x, "gelu", "input");
  Array y = Array::empty(x.shape(), DType::float32);
  const float* px = x.data<float>();
  float* py = y.mutable_data<float>();
  const auto kernel = simd::kernels().gelu_tanh;
  parallel_for(x.size(), 1 << 14,
               [&](int64_t lo, int64_t hi) { kernel(px + lo, py + lo, hi - lo); });
  if (!needs_grad(x)) return y;
  return record("gelu_tanh", y, {&x}, [x](const Array& g, const Array&, const Need&) {
    if (autodiff::is_recording())
      return composite_vjp(
          g, [](const Array& a) { return composite::gelu_tanh(a); }, x);
    // simd::Kernels::gelu_tanh_vjp, written over the cotangent when nothing else holds it
    Array dx = autodiff::reusable(g, x.shape(), DType::float32);
    const float* px = x.data<float>();
    const float* pg = g.data<float>();
    float* pd = dx.mutable_data<float>();
    const auto kernel = simd::kernels().gelu_tanh_vjp;
    parallel_for(x.size(), 1 << 14,
                 [&](int64_t lo, int64_t hi) { kernel(px + lo, pg + lo, pd + lo, hi - lo); });
    return Grads{dx};
  });
}

// ---- layer norm ------------------------------------------------------------------------------

namespace {
struct RowStats {
  float mean, r;     // r = rsqrt(var + eps)
  bool var_clipped;  // E[x^2] - E[x]^2 < 0 was clipped to 0 (no gradient through var)
};
// Bit-identical to the composite: float x*x, sequential double sums, float arithmetic after.
RowStats row_stats(const float* x, int64_t d, float eps, bool clip) {
  double s = 0, s2 = 0;
  for (int64_t j = 0; j < d; ++j) {
    s += x[j];
    float sq = x[j] * x[j];
    s2 += sq;
  }
  float fd = static_cast<float>(d);
  float mean = static_cast<float>(s) / fd;
  float mean2 = static_cast<float>(s2) / fd;
  float var = mean2 - mean * mean;
  bool clipped = clip && !(var > 0.f) && !std::isnan(var);
  if (clip) var = (std::isnan(var) || var > 0.f) ? var : 0.f;
  return {mean, 1.f / std::sqrt(var + eps), clipped && var == 0.f};
}
}  // namespace

Array layer_norm(const Array& x, const std::optional<Array>& scale,
                 const std::optional<Array>& bias, float eps, bool clip) {
  require_float(x, "layer_norm", "input");
  if (x.ndim() == 0) throw std::invalid_argument("layer_norm: input must have rank >= 1, got ()");
  int64_t d = x.shape().back(), rows = d ? x.size() / d : 0;
  for (const auto* p : {&scale, &bias})
    if (*p && ((*p)->ndim() != 1 || (*p)->shape()[0] != d))
      throw std::invalid_argument("layer_norm: scale/bias of shape " + to_string((*p)->shape()) +
                                  " for input " + to_string(x.shape()));
  Array y = Array::empty(x.shape(), DType::float32);
  const float* px = x.data<float>();
  const float* ps = scale ? scale->data<float>() : nullptr;
  const float* pb = bias ? bias->data<float>() : nullptr;
  float* py = y.mutable_data<float>();
  bool grad_needed = needs_grad(x) || (scale && needs_grad(*scale)) || (bias && needs_grad(*bias));
  std::vector<RowStats> stats(grad_needed ? static_cast<size_t>(rows)
                                          : 0);  // kept for the backward pass
  parallel_for(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, d)),
               [&](int64_t lo, int64_t hi) {
                 for (int64_t row = lo; row < hi; ++row) {
                   const float* xr = px + row * d;
                   float* yr = py + row * d;
                   RowStats st = row_stats(xr, d, eps, clip);
                   if (grad_needed) stats[static_cast<size_t>(row)] = st;
                   for (int64_t j = 0; j < d; ++j) {
                     float mul = ps ? st.r * ps[j] : st.r;
                     float v = (xr[j] - st.mean) * mul;
                     yr[j] = pb ? v + pb[j] : v;
                   }
                 }
               });
  if (!grad_needed) return y;
  std::vector<const Array*> inputs{&x};
  if (scale) inputs.push_back(&*scale);
  if (bias) inputs.push_back(&*bias);
  auto saved = std::make_shared<const std::vector<RowStats>>(std::move(stats));
  return record(
      "layer_norm", y, inputs,
      [x, scale, bias, eps, clip, d, rows, saved](const Array& g, const Array&, const Need& need) {
        if (autodiff::is_recording()) {
          auto f = [eps, clip](const Array& a, const std::optional<Array>& s,
                               const std::optional<Array>& b) {
            return composite::layer_norm(a, s, b, eps, clip);
          };
          if (scale && bias)
            return composite_vjp(
                g, [&](const Array& a, const Array& s, const Array& b) { return f(a, s, b); }, x,
                *scale, *bias);
          if (scale)
            return composite_vjp(
                g, [&](const Array& a, const Array& s) { return f(a, s, std::nullopt); }, x,
                *scale);
          if (bias)
            return composite_vjp(
                g, [&](const Array& a, const Array& b) { return f(a, std::nullopt, b); }, x, *bias);
          return composite_vjp(
              g, [&](const Array& a) { return f(a, std::nullopt, std::nullopt); }, x);
        }
        const float* px = x.data<float>();
        const float* pg = g.data<float>();
        const float* ps = scale ? scale->data<float>() : nullptr;
        Array dx = autodiff::reusable(g, x.shape(),
                                      DType::float32);  // a row of g is read before dx's is written
        float* pdx = dx.mutable_data<float>();
        // Per-chunk partial sums for dscale / dbias, combined in row order (deterministic for a
        // fixed thread count).
        std::mutex mu;
        std::map<int64_t, std::pair<std::vector<double>, std::vector<double>>>
            partial;  // by first row
        parallel_for(
            rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, d)),
            [&](int64_t lo, int64_t hi) {
              std::vector<double> sc(static_cast<size_t>(d), 0.0), bi(static_cast<size_t>(d), 0.0);
              std::vector<float> xhat(static_cast<size_t>(d)), dxhat(static_cast<size_t>(d));
              for (int64_t row = lo; row < hi; ++row) {
                const float* xr = px + row * d;
                const float* gr = pg + row * d;
                const RowStats& st = (*saved)[static_cast<size_t>(row)];
                // Four interleaved double sums per row (vectorisable; sequential ones were the bottleneck).
                double m1q[4] = {0, 0, 0, 0}, m2q[4] = {0, 0, 0, 0};
                int64_t j = 0;
                auto step = [&](int64_t jj, int q) {
                  float xh = (xr[jj] - st.mean) * st.r;
                  float dh = ps ? gr[jj] * ps[jj] : gr[jj];
                  xhat[jj] = xh;
                  dxhat[jj] = dh;
                  m1q[q] += dh;
                  m2q[q] += static_cast<double>(dh) * xh;
                  sc[jj] += static_cast<double>(gr[jj]) * xh;
                  bi[jj] += gr[jj];
                };
                for (; j + 4 <= d; j += 4)
                  for (int q = 0; q < 4; ++q) step(j + q, q);
                for (; j < d; ++j) step(j, 0);
                double m1 = (m1q[0] + m1q[1]) + (m1q[2] + m1q[3]),
                       m2 = (m2q[0] + m2q[1]) + (m2q[2] + m2q[3]);
                float mean_dxhat = static_cast<float>(m1 / d);
                float mean_dxx = st.var_clipped ? 0.f : static_cast<float>(m2 / d);
                float* dr = pdx + row * d;
                for (int64_t jj = 0; jj < d; ++jj)
                  dr[jj] = st.r * (dxhat[jj] - mean_dxhat - xhat[jj] * mean_dxx);
              }
              std::lock_guard<std::mutex> lock(mu);
              partial[lo] = {std::move(sc), std::move(bi)};
            });
        Grads r;
        r.push_back(dx);
        auto combine = [&](bool first) {
          Array out = Array::empty({d}, DType::float32);
          float* po = out.mutable_data<float>();
          for (int64_t j = 0; j < d; ++j) {
            double s = 0;
            for (auto& [lo, p] : partial) s += (first ? p.first : p.second)[static_cast<size_t>(j)];
            po[j] = static_cast<float>(s);
          }
          return out;
        };
        if (scale) r.push_back(need[1] ? combine(true) : Array());
        if (bias) r.push_back(need[r.size()] ? combine(false) : Array());
        return r;
      });
}

// ---- softmax cross-entropy with integer labels -----------------------------------------------

Array softmax_cross_entropy_with_integer_labels(const Array& logits, const Array& labels) {
  require_float(logits, "softmax_cross_entropy_with_integer_labels", "logits");
  if (labels.dtype() != DType::int32)
    throw std::invalid_argument(
        std::string("softmax_cross_entropy_with_integer_labels: labels must be int32, got ") +
        dtype_name(labels.dtype()));
  Shape expect(
      std::span<const int64_t>(logits.shape().begin(), logits.ndim() ? logits.ndim() - 1 : 0));
  if (logits.ndim() == 0 || labels.shape() != expect)
    throw std::invalid_argument("softmax_cross_entropy_with_integer_labels: logits " +
                                to_string(logits.shape()) + " need labels of shape " +
                                to_string(expect) + ", got " + to_string(labels.shape()));
  int64_t C = logits.shape().back(), rows = labels.size();
  const int32_t* pl = labels.data<int32_t>();
  for (int64_t i = 0; i < rows; ++i)
    if (pl[i] < 0 || pl[i] >= C)
      throw std::invalid_argument("softmax_cross_entropy_with_integer_labels: label " +
                                  std::to_string(pl[i]) + " at flat position " + std::to_string(i) +
                                  " is outside [0, " + std::to_string(C) + ")");
  const float* px = logits.data<float>();
  // Per row: the composite's logsumexp (max, exp, double sum in order, log) bit for bit.
  const simd::Kernels& k = simd::kernels();
  Array lse = Array::empty(expect, DType::float32);
  float* plse = lse.mutable_data<float>();
  parallel_for(rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, C)),
               [&](int64_t lo, int64_t hi) {
                 for (int64_t row = lo; row < hi; ++row) {
                   const float* xr = px + row * C;
                   float m = -INFINITY;
                   bool nan = false;
                   for (int64_t j = 0; j < C; ++j) {
                     nan = nan || std::isnan(xr[j]);
                     m = xr[j] > m ? xr[j] : m;
                   }
                   if (nan) m = NAN;
                   float fm = std::isinf(m) ? 0.f : m;
                   double s = 0;
                   for (int64_t j = 0; j < C; j += kPiece) {
                     float e[kPiece];
                     const int64_t m = std::min(kPiece, C - j);
                     k.scaled_exp(xr + j, fm, 1.f, e, m);  // 1 * exp(v) == exp(v)
                     for (int64_t q = 0; q < m; ++q) s += e[q];
                   }
                   const float sum = static_cast<float>(s);
                   float log_sum;
                   k.log(&sum, &log_sum, 1);
                   plse[row] = log_sum + fm;
                 }
               });
  Array loss = Array::empty(expect, DType::float32);
  float* po = loss.mutable_data<float>();
  for (int64_t row = 0; row < rows; ++row) po[row] = plse[row] - px[row * C + pl[row]];
  if (!needs_grad(logits)) return loss;
  return record("softmax_cross_entropy", loss, {&logits},
                [logits, labels, lse, C, rows](const Array& g, const Array&, const Need&) {
                  if (autodiff::is_recording())
                    return composite_vjp(
                        g,
                        [&](const Array& z) {
                          return composite::softmax_cross_entropy_with_integer_labels(z, labels);
                        },
                        logits);
                  // d/dz = g * (softmax(z) - onehot(label)), softmax = exp(z - lse), written over the logits
                  // when nothing else holds them (each element is read once, then overwritten).
                  Array dz = autodiff::reusable(logits, logits.shape(), DType::float32);
                  const float* px = logits.data<float>();
                  const float* pg = g.data<float>();
                  const float* plse = lse.data<float>();
                  const int32_t* pl = labels.data<int32_t>();
                  float* pd = dz.mutable_data<float>();
                  const auto scaled_exp = simd::kernels().scaled_exp;
                  parallel_for(rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, C)),
                               [&](int64_t lo, int64_t hi) {
                                 for (int64_t row = lo; row < hi; ++row) {
                                   const float* xr = px + row * C;
                                   float* dr = pd + row * C;
                                   scaled_exp(xr, plse[row], pg[row], dr, C);
                                   dr[pl[row]] -= pg[row];
                                 }
                               });
                  return Grads{dz};
                });
}

}  // namespace flaxpp::fused
