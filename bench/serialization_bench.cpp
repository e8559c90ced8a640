// Checkpoint speed on the gMLP README config (num_tokens=20000, dim=512, depth=4): 31,013,408
// float32 parameters, 124 MB. bytes_per_second counts parameter bytes (124 MB per save or load);
// the file_MB counter is the size on disk (JSON is ~5x larger: Python's float64 reprs).
//
//   build/bin/serialization_bench                       # all
//   build/bin/serialization_bench --benchmark_filter=msgpack
//
// Targets: msgpack >= 500 MB/s, JSON >= 50 MB/s. The *_file benchmarks include the fsync that
// makes save() durable, so they also measure the disk (here ~530 MB/s for `dd conv=fsync`).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "serialization/checksum.hpp"
#include "serialization/serialization.hpp"

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

// Files: save (write + fsync + rename), load (mmap + parse + validate against the target), and
// both; bytes_per_second counts parameter bytes per direction.
std::filesystem::path bench_file(const char* name) {
  return std::filesystem::temp_directory_path() / name;
}
// checksum: the CRC32C sidecar training checkpoints carry (computed on save, verified on load).
void save_file(benchmark::State& state, const char* name, bool checksum = false) {
  const Tree& t = gmlp_params();
  for (auto _ : state) save(bench_file(name), t, {.checksum = checksum});
  report(state, std::filesystem::file_size(bench_file(name)));
}
void load_file(benchmark::State& state, const char* name, bool checksum = false) {
  const Tree& t = gmlp_params();
  save(bench_file(name), t, {.checksum = checksum});
  for (auto _ : state) benchmark::DoNotOptimize(load(bench_file(name), t));
  report(state, std::filesystem::file_size(bench_file(name)));
}
void save_load_file(benchmark::State& state, const char* name) {
  const Tree& t = gmlp_params();
  for (auto _ : state) {
    save(bench_file(name), t);
    benchmark::DoNotOptimize(load(bench_file(name), t));
  }
  report(state, std::filesystem::file_size(bench_file(name)));
  state.SetBytesProcessed(2 * state.iterations() * param_bytes(t));
  std::filesystem::remove(bench_file(name));
}
constexpr const char* kMsgpackFile = "flaxpp_bench.msgpack";
constexpr const char* kJsonFile = "flaxpp_bench.json";
void BM_msgpack_save_file(benchmark::State& s) { save_file(s, kMsgpackFile); }
void BM_msgpack_load_file(benchmark::State& s) { load_file(s, kMsgpackFile); }
void BM_msgpack_save_load_file(benchmark::State& s) { save_load_file(s, kMsgpackFile); }
void BM_msgpack_save_file_crc32c(benchmark::State& s) { save_file(s, kMsgpackFile, true); }
void BM_msgpack_load_file_crc32c(benchmark::State& s) { load_file(s, kMsgpackFile, true); }
// The checksum alone, over the checkpoint's bytes in memory.
void BM_crc32c(benchmark::State& state) {
  auto b = to_bytes(gmlp_params());
  for (auto _ : state) benchmark::DoNotOptimize(crc32c(b.data(), b.size()));
  report(state, b.size());
}
void BM_json_save_file(benchmark::State& s) { save_file(s, kJsonFile); }
void BM_json_load_file(benchmark::State& s) { load_file(s, kJsonFile); }
void BM_json_save_load_file(benchmark::State& s) { save_load_file(s, kJsonFile); }

}  // namespace

BENCHMARK(BM_msgpack_to_bytes)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_msgpack_from_bytes)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_msgpack_save_file)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_msgpack_load_file)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_msgpack_save_load_file)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_msgpack_save_file_crc32c)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_msgpack_load_file_crc32c)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_crc32c)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_json_to_json)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_json_from_json)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_json_save_file)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_json_load_file)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_json_save_load_file)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
