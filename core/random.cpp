#include "core/random.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>

#include "core/simd/kernels.hpp"

namespace flaxpp::random {

namespace {

constexpr int64_t kBuf = kWordPiece + kWordPad;  // a piece of words, padded

int64_t padded(int64_t n) { return (n + kWordPad - 1) / kWordPad * kWordPad; }

const float kSqrt2 = static_cast<float>(M_SQRT2);          // 1.4142135 (0x3FB504F3)
const float kTiny = std::numeric_limits<float>::min();     // jnp.finfo(float32).tiny
const float kEps = std::numeric_limits<float>::epsilon();  // 2^-23
const float kEpsNeg = 0x1p-24f;                            // jnp.finfo(float32).epsneg

// The float32 kernels over padded buffers are simd::Kernels' uniform, normal, truncated_normal,
// erf_inv and log1p_correct (core/simd/kernels_impl.hpp), one build per instruction set.

// Applies a padded-buffer kernel to an arbitrary float array, a piece at a time.
template <class Kernel>
void map_pieces(float* data, int64_t n, Kernel kernel) {
  alignas(64) float buf[kBuf];
  for (int64_t o = 0; o < n; o += kWordPiece) {
    int64_t c = std::min(kWordPiece, n - o), p = padded(c);
    std::copy(data + o, data + o + c, buf);
    std::fill(buf + c, buf + p, 0.f);
    kernel(buf, p);
    std::copy(buf, buf + c, data + o);
  }
}

float scalar_via(float x, void (*kernel)(float*, int64_t)) {
  map_pieces(&x, 1, kernel);
  return x;
}

// float32 results of double evaluation (XLA:CPU's own approximations are within ~1 ulp).
float log_f32(float x) { return static_cast<float>(std::log(static_cast<double>(x))); }

// A float32 draw: kernel(words, out, n) turns n (a multiple of kWordPad) random words into
// floats at `out`, which may be the (unaligned) output array itself.
template <class Kernel>
Array draw_f32(const char* op, Key key, const Shape& shape, Kernel kernel) {
  Array out = Array::empty(shape, DType::float32, op);
  float* dst = out.mutable_data<float>();
  random_words(key, out.size(), bits_mode(), [&](uint32_t* w, int64_t count, int64_t offset) {
    if (count == padded(count)) return kernel(w, dst + offset, count);  // whole batches: direct
    alignas(64) float f[kBuf];
    kernel(w, f, padded(count));
    std::memcpy(dst + offset, f, count * sizeof(float));
  });
  return out;
}

// Elementwise float32 -> float32 map on a fresh array (derived samplers).
template <class F>
Array map_f32(Array a, F f) {
  float* p = a.mutable_data<float>();
  for (int64_t i = 0, n = a.size(); i < n; ++i) p[i] = f(p[i]);
  return a;
}

uint32_t urem(uint32_t a, uint32_t b) { return b == 0 ? a : a % b; }  // XLA: x rem 0 = x

}  // namespace

// ---- special functions ----

float erf_inv_f32(float x) { return scalar_via(x, simd::kernels().erf_inv); }
float log1p_f32(float x) { return scalar_via(x, simd::kernels().log1p_correct); }

// StableHLO's float32 erf, (x * alpha(x^2)) / beta(x^2) with x clamped to [-4, 4].
float erf_f32(float x) {
  constexpr float kAlpha[7] = {-2.72614225801306e-10f, 2.77068142495902e-08f,
                               -2.10102402082508e-06f, -5.69250639462346e-05f,
                               -7.34990630326855e-04f, -2.95459980854025e-03f,
                               -1.60960333262415e-02f};
  constexpr float kBeta[5] = {-1.45660718464996e-05f, -2.13374055278905e-04f,
                              -1.68282697438203e-03f, -7.37332916720468e-03f,
                              -1.42647390514189e-02f};
  x = std::clamp(x, -4.f, 4.f);
  float x2 = x * x, a = kAlpha[0], b = kBeta[0];
  for (int i = 1; i < 7; ++i) a = a * x2 + kAlpha[i];
  for (int i = 1; i < 5; ++i) b = b * x2 + kBeta[i];
  return std::clamp((x * a) / b, -1.f, 1.f);
}

// ---- keys ----

Key PRNGKey(int64_t seed) { return {0u, static_cast<uint32_t>(seed)}; }

Array key_data(Key key) { return Array::from({2}, std::vector<uint32_t>{key.k0, key.k1}); }

Key wrap_key_data(uint32_t k0, uint32_t k1) { return {k0, k1}; }

Key fold_in(Key key, uint32_t data) {
  auto y = threefry2x32_block(key, {0u, data});
  return {y[0], y[1]};
}

std::vector<Key> split(Key key, int64_t num) {
  if (num < 0) throw std::invalid_argument("split: num must be >= 0, got " + std::to_string(num));
  std::vector<Key> keys(num);
  if (bits_mode() == BitsMode::partitionable) {  // key j = block(key, (hi32(j), lo32(j)))
    for (int64_t j = 0; j < num; ++j) {
      auto y = threefry2x32_block(
          key, {static_cast<uint32_t>(static_cast<uint64_t>(j) >> 32), static_cast<uint32_t>(j)});
      keys[j] = {y[0], y[1]};
    }
    return keys;
  }
  // Legacy: threefry_2x32(key, iota(2 num)), words taken in pairs.
  random_words(key, 2 * num, BitsMode::legacy, [&](uint32_t* w, int64_t count, int64_t offset) {
    for (int64_t i = 0; i < count; ++i) {
      Key& k = keys[(offset + i) / 2];
      ((offset + i) % 2 ? k.k1 : k.k0) = w[i];
    }
  });
  return keys;
}

// ---- bits ----

Array bits(Key key, const Shape& shape) {
  Array out = Array::empty(shape, DType::uint32, "random.bits");
  uint32_t* dst = out.mutable_data<uint32_t>();
  random_words(key, out.size(), bits_mode(), [&](uint32_t* w, int64_t count, int64_t offset) {
    std::memcpy(dst + offset, w, count * sizeof(uint32_t));
  });
  return out;
}

Array bits(Key key, const Shape& shape, int bit_width) {
  if (bit_width == 32) return bits(key, shape);
  if (bit_width != 8 && bit_width != 16)
    throw std::invalid_argument("bits: bit_width must be 8, 16 or 32, got " +
                                std::to_string(bit_width));
  Array out = Array::empty(shape, DType::uint32, "random.bits");
  uint32_t* dst = out.mutable_data<uint32_t>();
  const int64_t n = out.size();
  const uint32_t mask = (1u << bit_width) - 1;
  if (bits_mode() == BitsMode::partitionable) {  // the 32-bit value truncated
    random_words(key, n, BitsMode::partitionable, [&](uint32_t* w, int64_t count, int64_t offset) {
      for (int64_t i = 0; i < count; ++i) dst[offset + i] = w[i] & mask;
    });
    return out;
  }
  // Legacy: ceil(bw n / 32) words, each viewed little-endian as 32/bw values.
  const int64_t per = 32 / bit_width, words = (n + per - 1) / per;
  random_words(key, words, BitsMode::legacy, [&](uint32_t* w, int64_t count, int64_t offset) {
    for (int64_t i = 0; i < count; ++i)
      for (int64_t j = 0; j < per && (offset + i) * per + j < n; ++j)
        dst[(offset + i) * per + j] = (w[i] >> (bit_width * j)) & mask;
  });
  return out;
}

// ---- float32 samplers ----

Array uniform(Key key, const Shape& shape, float minval, float maxval) {
  const auto& k = simd::kernels();
  return draw_f32("random.uniform", key, shape, [=, &k](const uint32_t* w, float* f, int64_t n) {
    k.uniform(w, f, n, minval, maxval);
  });
}

// normal: sqrt(2) * erf_inv(uniform(nextafter(-1, 0), 1)).
Array normal(Key key, const Shape& shape) {
  return draw_f32("random.normal", key, shape, simd::kernels().normal);
}

// truncated_normal: sqrt(2) erf_inv(uniform(erf(lower/sqrt2), erf(upper/sqrt2))), clipped to the open
// interval (nextafter(lower, +inf), nextafter(upper, -inf)).
Array truncated_normal(Key key, float lower, float upper, const Shape& shape) {
  const float a = erf_f32(lower / kSqrt2), b = erf_f32(upper / kSqrt2);
  const float lo = std::nextafter(lower, std::numeric_limits<float>::infinity());
  const float hi = std::nextafter(upper, -std::numeric_limits<float>::infinity());
  const auto& k = simd::kernels();
  auto kernel = [=, &k](const uint32_t* w, float* f, int64_t n) {
    k.truncated_normal(w, f, n, a, b, lo, hi);
  };
  return draw_f32("random.truncated_normal", key, shape, kernel);
}

Array bernoulli(Key key, float p, const Shape& shape) {
  Array out = Array::empty(shape, DType::bool_, "random.bernoulli");
  uint8_t* dst = out.mutable_data<uint8_t>();
  random_words(key, out.size(), bits_mode(), [&](uint32_t* w, int64_t count, int64_t offset) {
    alignas(64) float f[kBuf];
    simd::kernels().uniform(w, f, padded(count), 0.f, 1.f);
    for (int64_t i = 0; i < count; ++i) dst[offset + i] = f[i] < p;
  });
  return out;
}

// randint: two bit draws from split(key), combined modulo span with JAX's uint32 wrapping.
Array randint(Key key, const Shape& shape, int64_t minval, int64_t maxval) {
  constexpr int64_t kMin = std::numeric_limits<int32_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  const bool maxval_out_of_range = maxval > kMax;
  const auto lo = static_cast<int32_t>(std::clamp(minval, kMin, kMax));
  const auto hi = static_cast<int32_t>(std::clamp(maxval, kMin, kMax));
  std::vector<Key> ks = split(key, 2);
  Array higher = bits(ks[0], shape), lower = bits(ks[1], shape);
  uint32_t span = static_cast<uint32_t>(hi) - static_cast<uint32_t>(lo);
  if (hi <= lo) span = 1;
  if (maxval_out_of_range && hi > lo) span += 1;  // the full range: span wraps to 0
  uint32_t mult = urem(1u << 16, span);
  mult = urem(mult * mult, span);
  Array out = Array::empty(shape, DType::int32, "random.randint");
  const uint32_t *h = higher.data<uint32_t>(), *l = lower.data<uint32_t>();
  int32_t* dst = out.mutable_data<int32_t>();
  for (int64_t i = 0, n = out.size(); i < n; ++i) {
    uint32_t offset = urem(urem(h[i], span) * mult + urem(l[i], span), span);
    dst[i] = static_cast<int32_t>(static_cast<uint32_t>(lo) + offset);
  }
  return out;
}

// permutation: ceil(3 ln(n) / ln(2^32 - 1)) rounds of a stable sort by fresh 32-bit keys.
Array permutation(Key key, int64_t n) {
  if (n < 0) throw std::invalid_argument("permutation: n must be >= 0, got " + std::to_string(n));
  if (n > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument("permutation: n must fit int32, got " + std::to_string(n));
  std::vector<int32_t> x(n);
  std::iota(x.begin(), x.end(), 0);
  const int rounds =
      static_cast<int>(std::ceil(3.0 * std::log(std::max<double>(1, n)) / std::log(4294967295.0)));
  std::vector<std::pair<uint32_t, int32_t>> kv(n);
  for (int r = 0; r < rounds; ++r) {
    std::vector<Key> ks = split(key, 2);
    key = ks[0];
    Array sort_keys = bits(ks[1], {n});
    const uint32_t* sk = sort_keys.data<uint32_t>();
    for (int64_t i = 0; i < n; ++i) kv[i] = {sk[i], x[i]};
    std::stable_sort(kv.begin(), kv.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (int64_t i = 0; i < n; ++i) x[i] = kv[i].second;
  }
  return Array::from({n}, x);
}

Array categorical(Key key, const Array& logits, int64_t axis) {
  if (logits.dtype() != DType::float32)
    throw std::invalid_argument(std::string("categorical: logits must be float32, got ") +
                                dtype_name(logits.dtype()));
  const Shape& shape = logits.shape();
  const size_t ax = normalize_axis(axis, shape.size(), "categorical");
  Shape batch = shape;
  batch.erase(ax);
  const int64_t k = shape[ax];
  if (k == 0)
    throw std::invalid_argument("categorical: logits axis " + std::to_string(axis) +
                                " has size 0 in shape " + to_string(shape));
  int64_t outer = 1, inner = 1;
  for (size_t d = 0; d < ax; ++d) outer *= shape[d];
  for (size_t d = ax + 1; d < shape.size(); ++d) inner *= shape[d];
  Array g = gumbel(key, shape);
  const float *gp = g.data<float>(), *lp = logits.data<float>();
  Array out = Array::empty(batch, DType::int32);
  int32_t* dst = out.mutable_data<int32_t>();
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t in = 0; in < inner; ++in) {
      int64_t best = 0;
      float best_v = std::numeric_limits<float>::quiet_NaN();
      for (int64_t j = 0; j < k; ++j) {  // jnp.argmax: first maximum, NaN counts as maximal
        int64_t idx = (o * k + j) * inner + in;
        float v = gp[idx] + lp[idx];
        if (j == 0 || (!std::isnan(best_v) && (v > best_v || std::isnan(v)))) best = j, best_v = v;
      }
      dst[o * inner + in] = static_cast<int32_t>(best);
    }
  return out;
}

// ---- derived samplers (jax.random) ----

Array exponential(Key key, const Shape& shape) {  // -log1p(-u)
  Array u = uniform(key, shape);
  float* p = u.mutable_data<float>();
  for (int64_t i = 0; i < u.size(); ++i) p[i] = -p[i];
  map_pieces(p, u.size(), simd::kernels().log1p_correct);
  for (int64_t i = 0; i < u.size(); ++i) p[i] = -p[i];
  return u;
}

Array gumbel(Key key, const Shape& shape) {  // -log(-log(uniform(tiny, 1)))
  return map_f32(uniform(key, shape, kTiny, 1.f), [](float u) { return -log_f32(-log_f32(u)); });
}

Array laplace(Key key, const Shape& shape) {  // sign(u) log1p(-|u|), u in [-1 + epsneg, 1)
  Array u = uniform(key, shape, -1.f + kEpsNeg, 1.f);
  Array l = map_f32(u.copy(), [](float v) { return -std::fabs(v); });
  float* lp = l.mutable_data<float>();
  map_pieces(lp, l.size(), simd::kernels().log1p_correct);
  const float* up = u.data<float>();
  for (int64_t i = 0; i < l.size(); ++i) {
    float sign = up[i] > 0.f ? 1.f : up[i] < 0.f ? -1.f : 0.f;
    lp[i] = sign * lp[i];
  }
  return l;
}

Array logistic(Key key, const Shape& shape) {  // log(x) - log1p(-x), x = uniform(tiny, 1)
  Array x = uniform(key, shape, kTiny, 1.f);
  Array l = map_f32(x.copy(), [](float v) { return -v; });
  float* lp = l.mutable_data<float>();
  map_pieces(lp, l.size(), simd::kernels().log1p_correct);
  const float* xp = x.data<float>();
  for (int64_t i = 0; i < l.size(); ++i) lp[i] = log_f32(xp[i]) - lp[i];
  return l;
}

Array cauchy(Key key, const Shape& shape) {  // tan(pi (u - 1/2)), u = uniform(eps, 1)
  const float pi = static_cast<float>(M_PI);
  return map_f32(uniform(key, shape, kEps, 1.f), [pi](float u) {
    return static_cast<float>(std::tan(static_cast<double>(pi * (u - 0.5f))));
  });
}

Array rademacher(Key key, const Shape& shape) {  // 2 bernoulli(0.5) - 1
  Array b = bernoulli(key, 0.5f, shape);
  Array out = Array::empty(shape, DType::int32, "random.rademacher");
  const uint8_t* bp = b.data<uint8_t>();
  int32_t* dst = out.mutable_data<int32_t>();
  for (int64_t i = 0; i < out.size(); ++i) dst[i] = 2 * bp[i] - 1;
  return out;
}

Array maxwell(Key key, const Shape& shape) {  // |normal(shape + (3,))|
  Shape s3 = shape;
  s3.push_back(3);
  Array z = normal(key, s3);
  const float* zp = z.data<float>();
  Array out = Array::empty(shape, DType::float32, "random.maxwell");
  float* dst = out.mutable_data<float>();
  for (int64_t i = 0; i < out.size(); ++i) {
    const float* v = zp + 3 * i;
    dst[i] = std::sqrt(((0.f + v[0] * v[0]) + v[1] * v[1]) + v[2] * v[2]);
  }
  return out;
}

Array double_sided_maxwell(Key key, float loc, float scale, const Shape& shape) {
  std::vector<Key> ks = split(key, 2);
  Array m = maxwell(ks[0], shape);
  Array sign = rademacher(ks[1], shape);
  float* mp = m.mutable_data<float>();
  const int32_t* sp = sign.data<int32_t>();
  for (int64_t i = 0; i < m.size(); ++i) mp[i] = static_cast<float>(sp[i]) * mp[i] * scale + loc;
  return m;
}

Array weibull_min(Key key, float scale, float concentration, const Shape& shape) {
  const float inv_k = 1.f / concentration;  // (-log1p(-u))^(1/k) scale
  Array e = exponential(key, shape);
  return map_f32(std::move(e), [=](float v) {
    return static_cast<float>(std::pow(static_cast<double>(v), static_cast<double>(inv_k))) * scale;
  });
}

Array pareto(Key key, float b, const Shape& shape) {  // exp(exponential / b)
  return map_f32(exponential(key, shape),
                 [b](float e) { return static_cast<float>(std::exp(static_cast<double>(e / b))); });
}

}  // namespace flaxpp::random
