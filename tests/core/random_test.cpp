// core/random + core/threefry: JAX's published known answers, then statistics, then the
// engine's invariants (threads, vector lanes and tails, modes).
#include "core/random.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "core/parallel.hpp"

using flaxpp::Array;
using flaxpp::DType;
using flaxpp::Shape;
using json = nlohmann::json;
namespace rnd = flaxpp::random;

namespace {

const json& fixture() {
  static const json j = [] {
    std::ifstream f(FLAXPP_SHARED_DIR "/fixtures/jax_random_known_answers.json");
    if (!f)
      throw std::runtime_error("cannot open " FLAXPP_SHARED_DIR
                               "/fixtures/jax_random_known_answers.json");
    return json::parse(f);
  }();
  return j;
}

// A result: row-major values as doubles and a shape.
struct Values {
  std::vector<double> v;
  Shape shape;
};

Values values_of(const Array& a) { return {a.to_double(), a.shape()}; }

Shape shape_of(const json& j) {
  Shape s;
  for (const auto& d : j) s.push_back(d.get<int64_t>());
  return s;
}

// Expected values, flattened, and the nested-list shape.
void flatten(const json& j, std::vector<double>& out, Shape& shape, size_t depth = 0) {
  if (j.is_array()) {
    if (depth == shape.size()) shape.push_back(static_cast<int64_t>(j.size()));
    for (const auto& e : j) flatten(e, out, shape, depth + 1);
  } else if (j.is_boolean()) {
    out.push_back(j.get<bool>() ? 1.0 : 0.0);
  } else {
    out.push_back(j.get<double>());
  }
}

// A key spec {"data": [k0, k1]} or {"seed": s}, then "derive" steps, in the current mode.
rnd::Key key_of(const json& spec) {
  rnd::Key k = spec.contains("data") ? rnd::wrap_key_data(spec["data"][0].get<uint32_t>(),
                                                          spec["data"][1].get<uint32_t>())
                                     : rnd::PRNGKey(spec["seed"].get<int64_t>());
  if (spec.contains("derive"))
    for (const auto& step : spec["derive"]) {
      if (step[0] == "split")
        k = rnd::split(k, step[1].get<int64_t>()).at(step[2].get<size_t>());
      else
        k = rnd::fold_in(k, step[1].get<uint32_t>());
    }
  return k;
}

Array keys_array(const std::vector<rnd::Key>& keys) {
  std::vector<uint32_t> w;
  for (auto k : keys) w.push_back(k.k0), w.push_back(k.k1);
  return Array::from({static_cast<int64_t>(keys.size()), 2}, w);
}

// Small derived computations that JAX's docstrings print (done in double: they are compared
// at the docstrings' printed precision, or are exact integers).
Values cov_rows(const Array& x) {  // jnp.cov: rows are variables, ddof = 1
  const int64_t r = x.shape()[0], n = x.shape()[1];
  std::vector<double> v = x.to_double(), mean(r, 0.0), out(r * r, 0.0);
  for (int64_t i = 0; i < r; ++i) mean[i] = std::accumulate(&v[i * n], &v[i * n] + n, 0.0) / n;
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < r; ++j) {
      double s = 0;
      for (int64_t t = 0; t < n; ++t) s += (v[i * n + t] - mean[i]) * (v[j * n + t] - mean[j]);
      out[i * r + j] = s / (n - 1);
    }
  return {out, {r, r}};
}

Values dct2_last_axis(const Array& x) {  // scipy.fft.dct(x), type 2, norm=None, axis=-1
  const int64_t r = x.shape()[0], n = x.shape()[1];
  std::vector<double> v = x.to_double(), out(r * n);
  for (int64_t i = 0; i < r; ++i)
    for (int64_t k = 0; k < n; ++k) {
      double s = 0;
      for (int64_t t = 0; t < n; ++t)
        s += v[i * n + t] * std::cos(M_PI * k * (2 * t + 1) / (2.0 * n));
      out[i * n + k] = 2 * s;
    }
  return {out, {r, n}};
}

std::vector<double> matmul(const std::vector<double>& a, const std::vector<double>& b, int64_t n,
                           int64_t k, int64_t m) {
  std::vector<double> c(n * m, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < k; ++t)
      for (int64_t j = 0; j < m; ++j) c[i * m + j] += a[i * k + t] * b[t * m + j];
  return c;
}

// Evaluates one vector's op for one key in the current mode. Throws std::out_of_range for
// ops this file does not know.
Values evaluate(const std::string& op, const json& args, rnd::Key key) {
  auto f = [&](const char* name, double dflt) { return args.value(name, dflt); };
  auto shape = [&] { return shape_of(args.at("shape")); };
  if (op == "threefry2x32_block") {
    auto y = rnd::threefry2x32_block(
        key, {args["count"][0].get<uint32_t>(), args["count"][1].get<uint32_t>()});
    return {{double(y[0]), double(y[1])}, {2}};
  }
  if (op == "threefry_2x32") {
    std::vector<uint32_t> c = args["counts"].get<std::vector<uint32_t>>();
    std::vector<uint32_t> y = rnd::threefry_2x32(key, c);
    return {{y.begin(), y.end()}, {static_cast<int64_t>(y.size())}};
  }
  if (op == "prng_key") return values_of(rnd::key_data(rnd::PRNGKey(args["seed"].get<int64_t>())));
  if (op == "key_data") return values_of(rnd::key_data(key));
  if (op == "split") return values_of(keys_array(rnd::split(key, args["num"].get<int64_t>())));
  if (op == "fold_in")
    return values_of(rnd::key_data(rnd::fold_in(key, args["data"].get<uint32_t>())));
  if (op == "bits") return values_of(rnd::bits(key, shape(), args["bit_width"].get<int>()));
  if (op == "uniform")
    return values_of(rnd::uniform(key, shape(), float(f("minval", 0)), float(f("maxval", 1))));
  if (op == "normal") return values_of(rnd::normal(key, shape()));
  if (op == "truncated_normal")
    return values_of(
        rnd::truncated_normal(key, float(f("lower", 0)), float(f("upper", 0)), shape()));
  if (op == "bernoulli") return values_of(rnd::bernoulli(key, float(f("p", 0.5)), shape()));
  if (op == "randint")
    return values_of(
        rnd::randint(key, shape(), args["minval"].get<int64_t>(), args["maxval"].get<int64_t>()));
  if (op == "exponential") return values_of(rnd::exponential(key, shape()));
  if (op == "gumbel") return values_of(rnd::gumbel(key, shape()));
  if (op == "laplace") return values_of(rnd::laplace(key, shape()));
  if (op == "logistic") return values_of(rnd::logistic(key, shape()));
  if (op == "cauchy") return values_of(rnd::cauchy(key, shape()));
  if (op == "rademacher") return values_of(rnd::rademacher(key, shape()));
  if (op == "maxwell") return values_of(rnd::maxwell(key, shape()));
  if (op == "double_sided_maxwell")
    return values_of(
        rnd::double_sided_maxwell(key, float(f("loc", 0)), float(f("scale", 1)), shape()));
  if (op == "weibull_min")
    return values_of(
        rnd::weibull_min(key, float(f("scale", 1)), float(f("concentration", 1)), shape()));
  if (op == "pareto") return values_of(rnd::pareto(key, float(f("b", 1)), shape()));
  if (op == "cov_of_normal") return cov_rows(rnd::normal(key, shape()));
  if (op == "dct_of_normal") return dct2_last_axis(rnd::normal(key, shape()));
  if (op == "doc_einsum_randint_example") {  // x @ y @ z of randints from split(key, 3)
    auto ks = rnd::split(key, 3);
    auto x = rnd::randint(ks[0], {2, 3}, -5, 5).to_double();
    auto y = rnd::randint(ks[1], {3, 100}, -5, 5).to_double();
    auto z = rnd::randint(ks[2], {100, 5}, -5, 5).to_double();
    return {matmul(matmul(x, y, 2, 3, 100), z, 2, 100, 5), {2, 5}};
  }
  if (op == "doc_sparsify_example") {  // mat[mat < 0.5] = 0; -(sin(mat) @ vec)
    auto mat = rnd::uniform(key_of(args["mat_key"]), {5, 5}).to_double();
    auto vec = rnd::uniform(key_of(args["vec_key"]), {5}).to_double();
    for (double& m : mat) m = m < 0.5 ? 0.0 : std::sin(m);
    auto y = matmul(mat, vec, 5, 5, 1);
    for (double& e : y) e = -e;
    return {y, {5}};
  }
  throw std::out_of_range("op not implemented here: " + op);
}

// Runs a vector (every key of a vmapped list, then "post"); returns "" on a match, else why not.
std::string run_vector(const json& vec) {
  const std::string op = vec["op"];
  const json args = vec.value("args", json::object());
  Values got;
  if (vec.contains("key") && vec["key"].is_array()) {  // vmap over a list of key specs
    for (const auto& spec : vec["key"]) {
      Values one = evaluate(op, args, key_of(spec));
      got.v.insert(got.v.end(), one.v.begin(), one.v.end());
      got.shape = one.shape;
    }
    got.shape.insert(0, static_cast<int64_t>(vec["key"].size()));
  } else {
    got = evaluate(op, args, vec.contains("key") ? key_of(vec["key"]) : rnd::Key{});
  }
  if (vec.value("post", "") == "add_arange")  // float32 add, as JAX
    for (size_t i = 0; i < got.v.size(); ++i) got.v[i] = float(float(got.v[i]) + float(i));
  if (vec.contains("select")) {
    std::vector<double> sel;
    for (const auto& i : vec["select"]["flat_indices"]) sel.push_back(got.v.at(i.get<size_t>()));
    got = {sel, {static_cast<int64_t>(sel.size())}};
  }
  std::vector<double> want;
  Shape want_shape;
  flatten(vec["expected"], want, want_shape);
  if (want_shape != got.shape)
    return "shape " + flaxpp::to_string(got.shape) + " != expected " +
           flaxpp::to_string(want_shape);
  const bool exact = vec.value("compare", "exact") == "exact";
  const double atol = vec.value("atol", 0.0), rtol = vec.value("rtol", 0.0);
  for (size_t i = 0; i < want.size(); ++i) {
    bool ok = exact ? got.v[i] == want[i]
                    : std::fabs(got.v[i] - want[i]) <= atol + rtol * std::fabs(want[i]);
    if (!ok)
      return "element " + std::to_string(i) + ": got " + std::to_string(got.v[i]) + ", expected " +
             std::to_string(want[i]);
  }
  return "";
}

// Why a vector is out of reach for this build, or "" if it should run.
std::string skip_reason(const json& vec) {
  auto x64 = [](const json& j) { return j.is_object() && j.value("x64", false); };
  bool key_x64 = vec.contains("key") &&
                 (x64(vec["key"]) || (vec["key"].is_array() &&
                                      std::any_of(vec["key"].begin(), vec["key"].end(), x64)));
  if (x64(vec) || key_x64 || (vec.contains("args") && x64(vec["args"])))
    return "x64 (flaxpp is float32/int32, jax_enable_x64 off)";
  if (vec.contains("args") && vec["args"].value("jit", false))
    return "jit-only OverflowError (PRNGKey wraps like eager JAX)";
  if (vec["op"] == "initializer") return "initializer (run by tests/nn/initializers_test)";
  if (vec.value("numerics", "strict") == "xla_cpu_fastmath")
    return "xla_cpu_fastmath numerics (old XLA:CPU FMA/reassociation; we are strict)";
  return "";
}

std::vector<rnd::BitsMode> modes_of(const json& vec) {
  if (vec["mode"] == "legacy") return {rnd::BitsMode::legacy};
  if (vec["mode"] == "partitionable") return {rnd::BitsMode::partitionable};
  return {rnd::BitsMode::partitionable, rnd::BitsMode::legacy};  // "both": must hold in each
}

double mean_of(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / v.size();
}
double var_of(const std::vector<double>& v) {
  double m = mean_of(v), s = 0;
  for (double e : v) s += (e - m) * (e - m);
  return s / v.size();
}

}  // namespace

TEST_CASE("JAX known-answer vectors (shared/fixtures/jax_random_known_answers.json)") {
  const json& vectors = fixture().at("vectors");
  int ran = 0, passed = 0, skipped = 0, fastmath_also_strict = 0;
  std::map<std::string, int> reasons;
  for (const auto& vec : vectors) {
    const std::string id = vec["id"];
    std::string reason = skip_reason(vec);
    if (!reason.empty()) {
      ++skipped, ++reasons[reason];
      if (reason.starts_with("xla_cpu_fastmath")) {  // informational: does strict match anyway?
        rnd::ScopedBitsMode mode(modes_of(vec)[0]);
        if (run_vector(vec).empty()) ++fastmath_also_strict;
      }
      continue;
    }
    ++ran;
    std::string failure;
    for (rnd::BitsMode m : modes_of(vec)) {
      rnd::ScopedBitsMode mode(m);
      try {
        failure = run_vector(vec);
      } catch (const std::exception& e) {
        failure = std::string("threw: ") + e.what();
      }
      if (!failure.empty()) {
        failure = (m == rnd::BitsMode::legacy ? "[legacy] " : "[partitionable] ") + failure;
        break;
      }
    }
    CHECK_MESSAGE(failure.empty(), id << ": " << failure);
    if (failure.empty()) ++passed;
  }
  std::string why;
  for (const auto& [r, n] : reasons) why += "\n  " + std::to_string(n) + " x " + r;
  MESSAGE("fixture: ran " << ran << ", passed " << passed << ", skipped " << skipped << why
                          << "\n  (of the fastmath vectors, " << fastmath_also_strict
                          << " also match strict numerics; "
                          << fixture()["out_of_scope_vectors"].size()
                          << " out-of-scope vectors (beta, gamma, ...) are not attempted)");
  CHECK(ran + skipped == static_cast<int>(vectors.size()));
  CHECK(passed == ran);
  CHECK(ran >= 90);  // 123 vectors, 28 of them out of reach: never pass vacuously
}

TEST_CASE("threefry: JAX's large-array layout test and the half pairing") {
  // testThreefry2x32Large: 10^7 copies of the third Random123 counter pair.
  const int64_t n = 10'000'000;
  std::vector<uint32_t> counts(n);
  std::fill(counts.begin(), counts.begin() + n / 2, 0x243F6A88u);
  std::fill(counts.begin() + n / 2, counts.end(), 0x85A308D3u);
  std::vector<uint32_t> out = rnd::threefry_2x32({0x13198A2Eu, 0x03707344u}, counts);
  CHECK(std::all_of(out.begin(), out.begin() + n / 2, [](uint32_t v) { return v == 0xC4923A9Cu; }));
  CHECK(std::all_of(out.begin() + n / 2, out.end(), [](uint32_t v) { return v == 0x483DF7A0u; }));
  // Odd lengths pad the second half with a 0 count.
  std::vector<uint32_t> odd = rnd::threefry_2x32({1, 2}, std::vector<uint32_t>{5, 6, 7});
  auto b0 = rnd::threefry2x32_block({1, 2}, {5, 7}), b1 = rnd::threefry2x32_block({1, 2}, {6, 0});
  CHECK(odd == std::vector<uint32_t>{b0[0], b1[0], b0[1]});
  // The Array form keeps the shape.
  Array c = Array::from({2, 2}, std::vector<uint32_t>{1, 2, 3, 4});
  Array h = rnd::threefry_2x32({9, 9}, c);
  CHECK(h.shape() == Shape{2, 2});
  CHECK(h.data<uint32_t>()[3] == rnd::threefry2x32_block({9, 9}, {2, 4})[1]);
}

TEST_CASE("keys: seeds wrap like x64-off JAX; split, fold_in and the modes") {
  CHECK(rnd::PRNGKey(-1) == rnd::Key{0, 0xFFFFFFFFu});
  CHECK(rnd::PRNGKey((int64_t{1} << 32) + 5) == rnd::Key{0, 5});
  CHECK(rnd::key_data(rnd::PRNGKey(7)).shape() == Shape{2});
  CHECK(rnd::bits_mode() == rnd::BitsMode::partitionable);  // JAX >= 0.5.0 default
  rnd::Key k = rnd::PRNGKey(123);
  {
    rnd::ScopedBitsMode legacy(rnd::BitsMode::legacy);
    CHECK(rnd::bits_mode() == rnd::BitsMode::legacy);
    {
      rnd::ScopedBitsMode inner(rnd::BitsMode::partitionable);
      CHECK(rnd::bits_mode() == rnd::BitsMode::partitionable);
    }
    CHECK(rnd::bits_mode() == rnd::BitsMode::legacy);
    // Legacy split(k, 1) is both words of block(k, (0, 1)).
    auto y = rnd::threefry2x32_block(k, {0, 1});
    CHECK(rnd::split(k, 1)[0] == rnd::Key{y[0], y[1]});
  }
  CHECK(rnd::bits_mode() == rnd::BitsMode::partitionable);
  // Partitionable: split(k, n)[j] == fold_in(k, j) (JAX's test_split_fold_in_equivalence).
  auto ks = rnd::split(k, 1000);
  for (uint32_t j = 0; j < 1000; ++j) CHECK(ks[j] == rnd::fold_in(k, j));
  CHECK(rnd::split(k, 0).empty());
  CHECK_THROWS_AS(rnd::split(k, -1), std::invalid_argument);
  CHECK_THROWS_AS(rnd::bits(k, {3}, 12), std::invalid_argument);
  CHECK_THROWS_AS(rnd::permutation(k, -2), std::invalid_argument);
}

TEST_CASE("bits: vector lanes, tails and pieces equal the block function, in both modes") {
  rnd::Key k = rnd::PRNGKey(99);
  for (int64_t n : {0, 1, 2, 7, 8, 9, 17, 2047, 2048, 2049, 4097, 100'001}) {
    CAPTURE(n);
    Array p = rnd::bits(k, {n});  // partitionable: word i = y0 ^ y1 of block(k, (0, i))
    bool ok = true;
    for (int64_t i = 0; i < n; ++i) {
      auto y = rnd::threefry2x32_block(k, {0, static_cast<uint32_t>(i)});
      ok &= p.data<uint32_t>()[i] == (y[0] ^ y[1]);
    }
    CHECK(ok);
    rnd::ScopedBitsMode legacy(rnd::BitsMode::legacy);  // legacy: threefry_2x32(k, iota(n))
    std::vector<uint32_t> iota(n);
    std::iota(iota.begin(), iota.end(), 0u);
    Array l = rnd::bits(k, {n});
    CHECK(std::vector<uint32_t>(l.data<uint32_t>(), l.data<uint32_t>() + n) ==
          rnd::threefry_2x32(k, iota));
  }
}

TEST_CASE("threads: multi-threaded draws equal single-threaded draws bit for bit") {
  const int64_t n = 1'000'003;  // odd: exercises legacy's padded pair and ragged chunks
  rnd::Key k = rnd::PRNGKey(2024);
  auto same = [](const Array& a, const Array& b) {
    return a.shape() == b.shape() && a.dtype() == b.dtype() &&
           std::equal(static_cast<const char*>(a.raw()),
                      static_cast<const char*>(a.raw()) + a.nbytes(),
                      static_cast<const char*>(b.raw()));
  };
  for (rnd::BitsMode m : {rnd::BitsMode::partitionable, rnd::BitsMode::legacy}) {
    rnd::ScopedBitsMode mode(m);
    auto draw_all = [&] {
      return std::vector<Array>{rnd::bits(k, {n}), rnd::uniform(k, {n}, -3.f, 5.f),
                                rnd::normal(k, {n}), rnd::truncated_normal(k, -2.f, 2.f, {n}),
                                rnd::bernoulli(k, 0.25f, {n})};
    };
    rnd::set_num_threads(1);
    std::vector<Array> single = draw_all();
    int pool = flaxpp::num_threads();
    for (int t : {2, 3, 7}) {
      CAPTURE(t);
      flaxpp::set_num_threads(t);  // draws run on the kernel pool; rnd's count caps their share
      rnd::set_num_threads(t);
      std::vector<Array> multi = draw_all();
      for (size_t i = 0; i < single.size(); ++i) CHECK(same(single[i], multi[i]));
      rnd::set_num_threads(0);
      CHECK(rnd::num_threads() == t);
      for (size_t i = 0; i < single.size(); ++i) CHECK(same(single[i], draw_all()[i]));
    }
    flaxpp::set_num_threads(pool);
  }
}

TEST_CASE("statistics of large draws, both modes") {
  const int64_t n = 1'000'000;
  const double se = 1.0 / std::sqrt(double(n));  // standard error scale
  for (rnd::BitsMode m : {rnd::BitsMode::partitionable, rnd::BitsMode::legacy}) {
    rnd::ScopedBitsMode mode(m);
    rnd::Key k = rnd::PRNGKey(m == rnd::BitsMode::legacy ? 11 : 12);
    auto ks = rnd::split(k, 8);

    auto u = rnd::uniform(ks[0], {n}).to_double();
    CHECK(*std::min_element(u.begin(), u.end()) >= 0.0);
    CHECK(*std::max_element(u.begin(), u.end()) < 1.0);
    CHECK(std::fabs(mean_of(u) - 0.5) < 6 * se * std::sqrt(1 / 12.0));
    CHECK(std::fabs(var_of(u) - 1 / 12.0) < 0.002);

    auto ab = rnd::uniform(ks[1], {n}, -3.f, 5.f).to_double();
    CHECK(*std::min_element(ab.begin(), ab.end()) >= -3.0);
    CHECK(*std::max_element(ab.begin(), ab.end()) < 5.0);

    auto z = rnd::normal(ks[2], {n}).to_double();
    CHECK(std::fabs(mean_of(z)) < 6 * se);
    CHECK(std::fabs(var_of(z) - 1.0) < 6 * se * std::sqrt(2.0));
    CHECK(std::all_of(z.begin(), z.end(), [](double v) { return std::isfinite(v); }));

    auto t = rnd::truncated_normal(ks[3], -2.f, 2.f, {n}).to_double();
    CHECK(std::all_of(t.begin(), t.end(), [](double v) { return v > -2.0 && v < 2.0; }));
    CHECK(std::fabs(mean_of(t)) < 6 * se);
    const double trunc_std = 0.87962566103423978;  // std of N(0,1) truncated to (-2, 2)
    CHECK(std::fabs(var_of(t) - trunc_std * trunc_std) < 0.005);
    auto t1 = rnd::truncated_normal(ks[3], 0.5f, 1.f, {n}).to_double();
    CHECK(std::all_of(t1.begin(), t1.end(), [](double v) { return v > 0.5 && v < 1.0; }));
    auto tinf = rnd::truncated_normal(ks[3], -INFINITY, INFINITY, {1000}).to_double();
    CHECK(std::all_of(tinf.begin(), tinf.end(), [](double v) { return std::isfinite(v); }));

    auto b = rnd::bernoulli(ks[4], 0.3f, {n}).to_double();
    CHECK(std::fabs(mean_of(b) - 0.3) < 6 * se * std::sqrt(0.21));

    Array r = rnd::randint(ks[5], {n}, -7, 13);
    std::vector<int64_t> counts(20, 0);
    bool in_range = true;
    for (int64_t i = 0; i < n; ++i) {
      int32_t v = r.data<int32_t>()[i];
      in_range &= v >= -7 && v < 13;
      if (v >= -7 && v < 13) ++counts[v + 7];
    }
    CHECK(in_range);
    for (int64_t c : counts) CHECK(std::fabs(c - n / 20.0) < 6 * std::sqrt(n / 20.0));
    Array same = rnd::randint(ks[5], {100}, 4, 4);  // maxval <= minval gives minval
    CHECK(std::all_of(same.data<int32_t>(), same.data<int32_t>() + 100,
                      [](int32_t v) { return v == 4; }));
    auto full = rnd::randint(ks[6], {10000}, INT32_MIN, int64_t{1} << 31).to_double();
    CHECK(*std::min_element(full.begin(), full.end()) < -1e9);
    CHECK(*std::max_element(full.begin(), full.end()) > 1e9);

    Array p = rnd::permutation(ks[7], 5000);
    std::vector<int32_t> sorted(p.data<int32_t>(), p.data<int32_t>() + 5000);
    CHECK(!std::is_sorted(sorted.begin(), sorted.end()));
    std::sort(sorted.begin(), sorted.end());
    std::vector<int32_t> iota(5000);
    std::iota(iota.begin(), iota.end(), 0);
    CHECK(sorted == iota);
    CHECK(rnd::permutation(ks[7], 1).data<int32_t>()[0] == 0);
    CHECK(rnd::permutation(ks[7], 0).size() == 0);

    // categorical: frequencies follow softmax(logits) along the chosen axis.
    Array logits = Array::from({3, 1}, std::vector<float>{0.f, std::log(2.f), std::log(7.f)});
    std::vector<int> hits(3, 0);
    auto many = rnd::split(ks[0], 20000);
    for (auto kk : many) ++hits[rnd::categorical(kk, logits, 0).data<int32_t>()[0]];
    CHECK(std::fabs(hits[0] / 20000.0 - 0.1) < 0.015);
    CHECK(std::fabs(hits[2] / 20000.0 - 0.7) < 0.015);
    Array batch = rnd::categorical(ks[1], Array::from({4, 6}, std::vector<float>(24, 0.f)));
    CHECK(batch.shape() == Shape{4});
  }
}

TEST_CASE("float32 special functions: erf_inv, erf, log1p") {
  CHECK(rnd::erf_inv_f32(1.f) == INFINITY);
  CHECK(rnd::erf_inv_f32(-1.f) == -INFINITY);
  CHECK(rnd::erf_inv_f32(0.f) == 0.f);
  // XLA's erf: erf(-+2/sqrt2) is the correctly rounded -+0.9544997.
  const float s = 1.41421354f;
  CHECK(rnd::erf_f32(2.f / s) == 0.954499722f);
  CHECK(rnd::erf_f32(-2.f / s) == -0.954499722f);
  CHECK(rnd::erf_f32(100.f) == rnd::erf_f32(4.f));  // clamped argument
  // erf_inv inverts erf to about single precision (worse as |x| -> 1, where it is ill-conditioned).
  for (float x = -0.999f; x < 1.f; x += 0.0137f) {
    double want = 0;  // solve erf(want) = x in double by Newton
    for (int i = 0; i < 60; ++i)
      want -= (std::erf(want) - x) / (2 / std::sqrt(M_PI) * std::exp(-want * want));
    double rel = std::fabs(x) < 0.99f ? 1e-6 : 1e-5;
    CHECK(std::fabs(rnd::erf_inv_f32(x) - want) <= rel * std::fabs(want) + 1e-12);
  }
  // log1p_f32 is correctly rounded: compare with long double on [-1, 0] and around 0.
  uint32_t state = 12345, mismatches = 0;
  for (int i = 0; i < 200000; ++i) {
    state = state * 1664525u + 1013904223u;
    float t = -static_cast<float>(state >> 8) * 0x1p-24f;         // in (-1, 0]
    if (i % 2) t = std::ldexp(t, -static_cast<int>(state % 40));  // small magnitudes too
    mismatches += rnd::log1p_f32(t) != static_cast<float>(std::log1p(static_cast<long double>(t)));
  }
  CHECK(mismatches == 0);
  CHECK(rnd::log1p_f32(-1.f) == -INFINITY);
  CHECK(rnd::log1p_f32(0.f) == 0.f);
  CHECK(rnd::log1p_f32(1.f) == static_cast<float>(std::log1p(1.0)));
}
