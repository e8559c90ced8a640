// Checkpoint speed on the gMLP README config (num_tokens=20000, dim=512, depth=4): 31,013,408
// float32 parameters, 124 MB. bytes_per_second counts parameter bytes (124 MB per save or load);
// the file_MB counter is the size on disk (JSON is ~5x larger: Python's float64 reprs).
//
//   build/bin/serialization_bench                       # all
//   build/bin/serialization_bench --benchmark_filter=msgpack
//
// Targets: msgpack save+load >= 500 MB/s, JSON >= 50 MB/s. "File" benchmarks include the fsync
// that makes save() durable, so they also measure the disk.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "core/serialization.hpp"

using namespace flaxpp;

namespace {

// Deterministic values with realistic digits (a small LCG; no global RNG).
Array filled(const Shape& s, uint64_t seed) {
  Array a = Array::empty(s, DType::float32);
  float* p = a.mutable_data<float>();
  uint64_t x = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (int64_t i = 0; i < a.size(); ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    p[i] = (static_cast<float>(x >> 40) / 16777216.f - 0.5f) * 0.1f;
  }
  return a;
}

// flax-semantics.md §3.3, in insertion order.
const Tree& gmlp_params() {
  static const Tree tree = [] {
    TreeBuilder b;
    uint64_t seed = 0;
    auto p = [&](const std::string& path, const Shape& s) {
      b.set("params/" + path, filled(s, ++seed));
    };
    p("to_embed/embedding", {20000, 512});
    for (int i = 0; i < 4; ++i) {
      std::string l = "layers_" + std::to_string(i) + "/layers_0/";
      p(l + "norm/scale", {512});
      p(l + "norm/bias", {512});
      p(l + "layers_0/proj_in/kernel", {512, 2048});
      p(l + "layers_0/proj_in/bias", {2048});
      p(l + "layers_0/sgu/norm/scale", {1024});
      p(l + "layers_0/sgu/norm/bias", {1024});
      p(l + "layers_0/sgu/proj_out/kernel", {1024, 1024});
      p(l + "layers_0/sgu/proj_out/bias", {1024});
      p(l + "layers_0/proj_out/kernel", {1024, 512});
      p(l + "layers_0/proj_out/bias", {512});
    }
    p("to_logits/layers_0/scale", {512});
    p("to_logits/layers_0/bias", {512});
    p("to_logits/layers_1/kernel", {512, 20000});
    p("to_logits/layers_1/bias", {20000});
    Tree t = b.build();
    if (param_count(t) != 31013408) throw std::logic_error("gMLP tree has the wrong size");
    return t;
  }();
  return tree;
}

void report(benchmark::State& state, size_t file_bytes) {
  state.SetBytesProcessed(state.iterations() * param_bytes(gmlp_params()));
  state.counters["file_MB"] = static_cast<double>(file_bytes) / 1e6;
}

void BM_msgpack_to_bytes(benchmark::State& state) {
  const Tree& t = gmlp_params();
  size_t n = 0;
  for (auto _ : state) {
    auto b = to_bytes(t);
    n = b.size();
    benchmark::DoNotOptimize(b.data());
  }
  report(state, n);
}

void BM_msgpack_from_bytes(benchmark::State& state) {
  const Tree& t = gmlp_params();
  auto b = to_bytes(t);
  for (auto _ : state) benchmark::DoNotOptimize(from_bytes(t, b));
  report(state, b.size());
}

void BM_json_to_json(benchmark::State& state) {
  const Tree& t = gmlp_params();
  size_t n = 0;
  for (auto _ : state) {
    std::string s = to_json(t);
    n = s.size();
    benchmark::DoNotOptimize(s.data());
  }
  report(state, n);
}

void BM_json_from_json(benchmark::State& state) {
  const Tree& t = gmlp_params();
  std::string s = to_json(t);
  for (auto _ : state) benchmark::DoNotOptimize(from_json(t, s));
  report(state, s.size());
}

// save + load of one file; bytes_per_second counts the parameter bytes of both directions.
void save_load(benchmark::State& state, const char* name) {
  const Tree& t = gmlp_params();
  auto path = std::filesystem::temp_directory_path() / name;
  for (auto _ : state) {
    save(path, t);
    benchmark::DoNotOptimize(load(path, t));
  }
  size_t n = std::filesystem::file_size(path);
  std::filesystem::remove(path);
  report(state, n);
  state.SetBytesProcessed(2 * state.iterations() * param_bytes(t));
}
void BM_msgpack_save_load_file(benchmark::State& state) {
  save_load(state, "flaxpp_bench.msgpack");
}
void BM_json_save_load_file(benchmark::State& state) { save_load(state, "flaxpp_bench.json"); }

}  // namespace

BENCHMARK(BM_msgpack_to_bytes)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_msgpack_from_bytes)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_msgpack_save_load_file)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_json_to_json)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_json_from_json)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_json_save_load_file)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
