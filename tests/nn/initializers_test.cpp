// nn/initializers: JAX's fan and variance formulas, exact relations to core/random's samplers,
// statistics of large kernels, and the fixture's `initializer` vectors.
#include "nn/initializers.hpp"

#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using flaxpp::Array;
using flaxpp::DType;
using flaxpp::Shape;
using json = nlohmann::json;
namespace init = flaxpp::nn::initializers;
namespace rnd = flaxpp::random;

namespace {

bool bit_equal(const Array& a, const Array& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::equal(static_cast<const char*>(a.raw()),
                    static_cast<const char*>(a.raw()) + a.nbytes(),
                    static_cast<const char*>(b.raw()));
}

Array times(Array a, float c) {  // elementwise float32 product, as JAX's `sample * c`
  float* p = a.mutable_data<float>();
  for (int64_t i = 0; i < a.size(); ++i) p[i] = p[i] * c;
  return a;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double e : v) s += e;
  return s / v.size();
}

double variance(const std::vector<double>& v) {
  double m = mean(v), s = 0;
  for (double e : v) s += (e - m) * (e - m);
  return s / v.size();
}

const float kTruncStd = static_cast<float>(.87962566103423978);

}  // namespace

TEST_CASE("compute_fans follows JAX's _compute_fans") {
  CHECK(init::compute_fans({2, 3}) == std::pair<double, double>{2, 3});
  CHECK(init::compute_fans({3, 3, 16, 32}) == std::pair<double, double>{144, 288});  // 3x3 conv
  CHECK(init::compute_fans({5, 3, 4}, {-2}, {-1}, {0}) == std::pair<double, double>{3, 4});
  // nn.Embed: in_axis=-2 and out_axis=0 are the same axis of a (10, 4) table: fan_in = features.
  CHECK(init::compute_fans({10, 4}, {-2}, {0}).first == 4.0);
  // Receptive field is a true (float) division: 15/3/3 = 1.666..., fan_in = 3 * that = 5.
  auto [fi, fo] = init::compute_fans({3, 5}, {0}, {0});
  CHECK(fi == 5.0);
  CHECK(fo == 5.0);
  CHECK(init::compute_fans({2, 3, 4}, {0, 1}, {2}) == std::pair<double, double>{6, 4});
  CHECK_THROWS_WITH_AS(init::compute_fans({7}), doctest::Contains("1-dimensional"),
                       std::invalid_argument);
  CHECK_THROWS_AS(init::compute_fans({}), std::invalid_argument);
  CHECK_THROWS_WITH_AS(init::compute_fans({2, 3}, {-3}), doctest::Contains("-3"),
                       std::invalid_argument);
  CHECK_THROWS_AS(init::compute_fans({0, 3}), std::invalid_argument);
}

TEST_CASE("variance_scaling: bad arguments name the value") {
  CHECK_THROWS_WITH_AS(init::variance_scaling(1.0, "fan_middle", "normal"),
                       doctest::Contains("fan_middle"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(init::variance_scaling(1.0, "fan_in", "cauchy"), doctest::Contains("cauchy"),
                       std::invalid_argument);
  auto lecun = init::lecun_normal();
  CHECK_THROWS_WITH_AS(lecun(rnd::PRNGKey(0), {5}, DType::float32),
                       doctest::Contains("1-dimensional"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(lecun(rnd::PRNGKey(0), {2, 2}, DType::int32), doctest::Contains("int32"),
                       std::invalid_argument);
}

TEST_CASE("named initializers equal the sampler times JAX's scale, bit for bit") {
  for (rnd::BitsMode m : {rnd::BitsMode::partitionable, rnd::BitsMode::legacy}) {
    rnd::ScopedBitsMode mode(m);
    const rnd::Key key = rnd::PRNGKey(42);
    const Shape shape{4, 6};  // fan_in 4, fan_out 6
    auto uni = [&] { return rnd::uniform(key, shape, -1.f, 1.f); };
    auto tn = [&] { return rnd::truncated_normal(key, -2.f, 2.f, shape); };
    auto nrm = [&] { return rnd::normal(key, shape); };
    // variance = float32(scale / denominator), computed in double.
    const float v_in = static_cast<float>(1.0 / 4), v_avg = static_cast<float>(1.0 / 5);
    const float v_he = static_cast<float>(2.0 / 4);
    auto call = [&](const init::Initializer& f) { return f(key, shape, DType::float32); };

    CHECK(bit_equal(call(init::lecun_uniform()), times(uni(), std::sqrt(3.f * v_in))));
    CHECK(bit_equal(call(init::glorot_uniform()), times(uni(), std::sqrt(3.f * v_avg))));
    CHECK(bit_equal(call(init::he_uniform()), times(uni(), std::sqrt(3.f * v_he))));
    CHECK(bit_equal(call(init::lecun_normal()), times(tn(), std::sqrt(v_in) / kTruncStd)));
    CHECK(bit_equal(call(init::glorot_normal()), times(tn(), std::sqrt(v_avg) / kTruncStd)));
    CHECK(bit_equal(call(init::he_normal()), times(tn(), std::sqrt(v_he) / kTruncStd)));
    CHECK(bit_equal(call(init::variance_scaling(1.0, "fan_out", "normal")),
                    times(nrm(), std::sqrt(static_cast<float>(1.0 / 6)))));
    // fan_geo_avg: sqrt(4 * 6) in double; scale 3.
    CHECK(bit_equal(call(init::variance_scaling(3.0, "fan_geo_avg", "uniform")),
                    times(uni(), std::sqrt(3.f * static_cast<float>(3.0 / std::sqrt(24.0))))));
    // Aliases are the same initializers.
    CHECK(bit_equal(call(init::xavier_uniform()), call(init::glorot_uniform())));
    CHECK(bit_equal(call(init::xavier_normal()), call(init::glorot_normal())));
    CHECK(bit_equal(call(init::kaiming_uniform()), call(init::he_uniform())));
    CHECK(bit_equal(call(init::kaiming_normal()), call(init::he_normal())));
    // Plain ones: sample * float32(parameter); truncated_normal has no 0.8796 correction.
    CHECK(bit_equal(call(init::normal(0.05)), times(nrm(), 0.05f)));
    CHECK(bit_equal(call(init::normal()), times(nrm(), 0.01f)));
    CHECK(bit_equal(call(init::uniform(3.0)), times(rnd::uniform(key, shape), 3.f)));
    CHECK(bit_equal(call(init::truncated_normal(0.5, -1.0, 3.0)),
                    times(rnd::truncated_normal(key, -1.f, 3.f, shape), 0.5f)));
    // Batch axes and Embed's axes feed the same fans into the formula.
    CHECK(bit_equal(init::lecun_uniform({-2}, {-1}, {0})(key, {3, 4, 6}, DType::float32),
                    times(rnd::uniform(key, {3, 4, 6}, -1.f, 1.f), std::sqrt(3.f * v_in))));
  }
}

TEST_CASE("zeros, ones and constant ignore the key and honour the dtype") {
  Array z = init::zeros(rnd::PRNGKey(1), {2, 3});
  CHECK(z.dtype() == DType::float32);
  CHECK(z.to_double() == std::vector<double>(6, 0.0));
  Array o = init::ones_init()(rnd::PRNGKey(1), {3}, DType::int32);
  CHECK(o.dtype() == DType::int32);
  CHECK(o.to_double() == std::vector<double>(3, 1.0));
  CHECK(init::constant(-7)(rnd::PRNGKey(9), {2, 2}, DType::float32).to_double() ==
        std::vector<double>(4, -7.0));
  CHECK(init::zeros_init()(rnd::PRNGKey(2), {}, DType::float32).shape() == Shape{});
}

TEST_CASE("statistics of large kernels match the intended variance") {
  const rnd::Key key = rnd::PRNGKey(7);
  const Shape shape{512, 1024};  // fan_in 512, fan_out 1024
  auto stats = [&](const init::Initializer& f) {
    return f(key, shape, DType::float32).to_double();
  };
  auto lecun = stats(init::lecun_normal());  // truncation corrected: std = sqrt(1/fan_in)
  CHECK(std::fabs(variance(lecun) / (1.0 / 512) - 1) < 0.01);
  CHECK(std::fabs(mean(lecun)) < 1e-3);
  double bound = 2 * std::sqrt(1.0 / 512) / kTruncStd;
  CHECK(std::all_of(lecun.begin(), lecun.end(), [&](double v) { return std::fabs(v) < bound; }));
  auto he = stats(init::he_normal());
  CHECK(std::fabs(variance(he) / (2.0 / 512) - 1) < 0.01);
  auto glorot = stats(init::glorot_uniform());  // U(-a, a), a = sqrt(6 / (fan_in + fan_out))
  double a = std::sqrt(6.0 / (512 + 1024));
  CHECK(std::all_of(glorot.begin(), glorot.end(), [&](double v) { return std::fabs(v) <= a; }));
  CHECK(std::fabs(variance(glorot) / (2.0 / (512 + 1024)) - 1) < 0.01);
  auto geo = stats(init::variance_scaling(1.0, "fan_geo_avg", "normal"));
  CHECK(std::fabs(variance(geo) / (1.0 / std::sqrt(512.0 * 1024)) - 1) < 0.01);
  auto plain = stats(init::truncated_normal(1.0));  // no correction: variance 0.8796^2
  CHECK(std::fabs(variance(plain) / (double(kTruncStd) * kTruncStd) - 1) < 0.01);
}

TEST_CASE("fixture: the `initializer` vectors of jax_random_known_answers.json") {
  std::ifstream f(FLAXPP_SHARED_DIR "/fixtures/jax_random_known_answers.json");
  REQUIRE(f);
  const json fixture = json::parse(f);
  auto make = [](const std::string& name, const json& p) -> init::Initializer {
    if (name == "zeros") return init::zeros;
    if (name == "ones") return init::ones;
    if (name == "constant") return init::constant(p.at("value").get<double>());
    if (name == "normal") return init::normal(p.value("stddev", 1e-2));
    if (name == "uniform") return init::uniform(p.value("scale", 1e-2));
    if (name == "truncated_normal") return init::truncated_normal(p.value("stddev", 1e-2));
    static const std::map<std::string,
                          init::Initializer (*)(init::AxisList, init::AxisList, init::AxisList)>
        named = {{"glorot_uniform", init::glorot_uniform}, {"glorot_normal", init::glorot_normal},
                 {"lecun_uniform", init::lecun_uniform},   {"lecun_normal", init::lecun_normal},
                 {"he_uniform", init::he_uniform},         {"he_normal", init::he_normal}};
    return named.at(name)({-2}, {-1}, {});
  };
  // Returns "" when the vector matches in `mode`.
  auto run = [&](const json& vec, rnd::BitsMode mode) -> std::string {
    rnd::ScopedBitsMode scoped(mode);
    const json& args = vec["args"];
    Shape shape;
    for (const auto& d : args["shape"]) shape.push_back(d.get<int64_t>());
    rnd::Key key = rnd::PRNGKey(vec["key"]["seed"].get<int64_t>());
    std::vector<double> got =
        make(args["name"], args["params"])(key, shape, DType::float32).to_double();
    std::vector<double> want;
    for (const auto& row : vec["expected"])
      for (const auto& e : row) want.push_back(e.get<double>());
    if (got.size() != want.size()) return "size mismatch";
    const bool exact = vec.value("compare", "exact") == "exact";
    const double atol = vec.value("atol", 0.0), rtol = vec.value("rtol", 0.0);
    for (size_t i = 0; i < want.size(); ++i)
      if (exact ? got[i] != want[i]
                : std::fabs(got[i] - want[i]) > atol + rtol * std::fabs(want[i]))
        return "element " + std::to_string(i) + ": got " + std::to_string(got[i]) + ", expected " +
               std::to_string(want[i]);
    return "";
  };
  int ran = 0, passed = 0, skipped = 0, fastmath_also_strict = 0;
  for (const auto& vec : fixture["vectors"]) {
    if (vec["op"] != "initializer") continue;
    std::vector<rnd::BitsMode> modes;
    if (vec["mode"] != "partitionable") modes.push_back(rnd::BitsMode::legacy);
    if (vec["mode"] != "legacy") modes.push_back(rnd::BitsMode::partitionable);
    if (vec.value("numerics", "strict") == "xla_cpu_fastmath") {  // recorded with old fast-math
      ++skipped;
      fastmath_also_strict += run(vec, modes[0]).empty();
      continue;
    }
    ++ran;
    std::string failure;
    for (auto m : modes)
      if (failure.empty()) failure = run(vec, m);
    CHECK_MESSAGE(failure.empty(), vec["id"].get<std::string>() << ": " << failure);
    passed += failure.empty();
  }
  MESSAGE("initializer vectors: ran " << ran << ", passed " << passed << ", skipped " << skipped
                                      << " (xla_cpu_fastmath numerics; " << fastmath_also_strict
                                      << " of them also match strict numerics)");
  CHECK(passed == ran);
  CHECK(ran >= 3);
}
