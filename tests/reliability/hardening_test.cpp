// Issue #21's numbered cases, one regression test each (the number in the test name):
// sizes that overflow, JSON round trips that changed dtypes, training directories two runs
// share, CLI output over its input, reshape's negative dimensions, errors that said too little.
// The CLI cases run the built binary (FLAXPP_BINARY_DIR/bin/flaxpp and bin/train_charlm).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <doctest/doctest.h>
#include <sys/wait.h>

#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "core/tree.hpp"
#include "optax/optax.hpp"
#include "serialization/serialization.hpp"
#include "tests/reliability/expect_error.hpp"
#include "training/train_state.hpp"

using namespace flaxpp;
namespace fs = std::filesystem;
namespace rnd = flaxpp::random;

namespace {}  // namespace

TEST_CASE("#1 a shape whose size overflows int64 is an error naming the op and the shape") {
  const int64_t big = int64_t{1} << 32;
  expect_error<std::invalid_argument>(
      [&] {
        jnp::zeros({big, big});
      },
      {"zeros", "(4294967296,4294967296)", "overflows"});
  expect_error<std::invalid_argument>(
      [&] {
        jnp::ones({65536, 65536, 65536, 65536});
      },
      {"ones", "(65536,65536,65536,65536)"});
  auto key = rnd::PRNGKey(0);
  expect_error<std::invalid_argument>(
      [&] {
        rnd::uniform(key, {big, big});
      },
      {"random.uniform", "(4294967296,4294967296)"});
  expect_error<std::invalid_argument>([&] { rnd::normal(key, {big, big}); }, {"random.normal"});
  expect_error<std::invalid_argument>([&] { rnd::bits(key, {big, big}); }, {"random.bits"});
  // 2^62 float32 elements count in int64, but their 2^64 bytes do not.
  expect_error<std::invalid_argument>(
      [&] { jnp::zeros({int64_t{1} << 62}); },
      {"zeros", "(4611686018427387904,)", "4611686018427387904 x 4"});
  // A zero dimension makes the array empty whatever the others are (NumPy agrees).
  CHECK(jnp::zeros({0, big, big}).size() == 0);
}

TEST_CASE("#1 an allocation beyond memory and swap is refused before anything is allocated") {
  // 2^40 float32 = 4 TiB: no test machine has that much, so the check refuses it up front.
  size_t limit = memory_limit_bytes();
  REQUIRE(limit < (size_t{4} << 40));
  std::string msg = expect_error<AllocationError>(
      [] {
        jnp::zeros({int64_t{1} << 20, int64_t{1} << 20});
      },
      {"zeros", "(1048576,1048576)", "float32", "4398046511104 bytes", "4096.0 GiB",
       "more than this machine's memory and swap"});
  // Code that handles memory exhaustion keeps catching it.
  CHECK_THROWS_AS(jnp::ones({int64_t{1} << 20, int64_t{1} << 20}), std::bad_alloc);
}

TEST_CASE("#6 reshape refuses negative dimensions other than a single -1") {
  Array x = jnp::ones({2, 3});
  expect_error<std::invalid_argument>(
      [&] {
        jnp::reshape(x, {-2, -3});
      },
      {"reshape", "negative dimension -2", "(-2,-3)"});
  expect_error<std::invalid_argument>(
      [&] {
        jnp::reshape(x, {-1, -6});
      },
      {"reshape", "negative dimension -6"});
  expect_error<std::invalid_argument>(
      [&] {
        jnp::reshape(x, {-1, -1});
      },
      {"one unknown dimension"});
  CHECK(jnp::reshape(x, {-1}).shape() == Shape{6});
  CHECK(jnp::reshape(x, {3, -1}).shape() == Shape{3, 2});
  // Array::reshaped, under jnp::reshape, refuses them too.
  expect_error<std::invalid_argument>([&] { x.reshaped({-2, -3}); }, {"negative dimension"});
  // broadcast_to's target shape is checked the same way.
  expect_error<std::invalid_argument>([&] { jnp::broadcast_to(jnp::ones({1}), {-3}); },
                                      {"broadcast_to", "negative dimension -3"});
}

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(FLAXPP_BINARY_DIR) / "test_tmp" / "hardening" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Every leaf kind: each dtype as a scalar, as values JSON shows ambiguously (uint32 below 2^31,
// integral floats, -0.0) and unambiguously, and with no elements in three shapes.
Tree every_leaf_kind() {
  Tree t;
  const std::pair<const char*, DType> dtypes[] = {
      {"f32", DType::float32}, {"i32", DType::int32}, {"u32", DType::uint32}, {"b", DType::bool_}};
  for (auto [name, dt] : dtypes) {
    std::string n = name;
    t = t.set(n + "/empty0", Tree(Array::empty({0}, dt)));
    t = t.set(n + "/empty20", Tree(Array::empty({2, 0}, dt)));
    t = t.set(n + "/empty03", Tree(Array::empty({0, 3}, dt)));
  }
  t = t.set("f32/scalar", Tree(Array(2.f)));
  t = t.set("f32/integral", Tree(Array::from({3}, std::vector<float>{1.f, -0.f, 3.f})));
  t = t.set("f32/nonfinite", Tree(Array::from({2}, std::vector<float>{INFINITY, -INFINITY})));
  t = t.set("i32/scalar", Tree(Array(int32_t{-7})));
  t = t.set("i32/range", Tree(Array::from({2}, std::vector<int32_t>{INT32_MIN, INT32_MAX})));
  t = t.set("u32/scalar", Tree(Array::from({}, std::vector<uint32_t>{5u})));
  t = t.set("u32/small", Tree(Array::from({2, 2}, std::vector<uint32_t>{0u, 1u, 2u, 3u})));
  t = t.set("u32/large", Tree(Array::from({2}, std::vector<uint32_t>{1u, 4294967295u})));
  t = t.set("b/scalar", Tree(Array(true)));
  t = t.set("b/values", Tree(Array::from_bool({3}, {true, false, true})));
  t = t.set("rng", Tree(rnd::key_data(rnd::PRNGKey(10))));  // case 2's leaf: uint32 (2,)
  return t;
}

// Same structure, and every leaf the same shape, dtype and bytes.
void require_exact(const Tree& got, const Tree& want, const std::string& how) {
  auto g = flatten_dict(got), w = flatten_dict(want);
  // safetensors keeps no key order: compare leaf by leaf, by path.
  auto by_path = [](const auto& x, const auto& y) { return x.first < y.first; };
  std::sort(g.begin(), g.end(), by_path);
  std::sort(w.begin(), w.end(), by_path);
  REQUIRE_MESSAGE(g.size() == w.size(), how);
  for (size_t i = 0; i < g.size(); ++i) {
    INFO(how << ": " << w[i].first);
    CHECK(g[i].first == w[i].first);
    CHECK(g[i].second.dtype() == w[i].second.dtype());
    CHECK(g[i].second.shape() == w[i].second.shape());
    CHECK(g[i].second.nbytes() == w[i].second.nbytes());
    if (g[i].second.nbytes() == w[i].second.nbytes() && w[i].second.nbytes())
      CHECK(std::memcmp(g[i].second.raw(), w[i].second.raw(), w[i].second.nbytes()) == 0);
  }
}

}  // namespace

TEST_CASE("#2 every leaf kind survives every format pair exactly, with and without a target") {
  // msgpack, JSON (with its .meta sidecar) and safetensors, each to each.
  fs::path d = fresh_dir("formats");
  const Tree want = every_leaf_kind();
  const char* exts[] = {".msgpack", ".json", ".safetensors"};
  for (const char* a : exts)
    for (const char* b : exts)
      for (bool with_target : {false, true}) {
        std::string how = std::string(a) + " -> " + b + (with_target ? " (target)" : "");
        // save as a, load, save as b (what `flaxpp convert` does), load b.
        fs::path pa = d / (std::string("a") + a), pb = d / (std::string("b") + b);
        save(pa, want);
        Tree mid = with_target ? load(pa, want) : load(pa);
        require_exact(mid, want, how + ", first load");
        save(pb, mid);
        require_exact(with_target ? load(pb, want) : load(pb), want, how);
      }
  // The msgpack bytes themselves come back unchanged through JSON.
  save(d / "x.msgpack", want);
  save(d / "x.json", load(d / "x.msgpack"));
  save(d / "y.msgpack", load(d / "x.json"));
  std::ifstream x(d / "x.msgpack", std::ios::binary), y(d / "y.msgpack", std::ios::binary);
  std::stringstream xs, ys;
  xs << x.rdbuf();
  ys << y.rdbuf();
  CHECK(xs.str() == ys.str());
}

TEST_CASE("#2 the JSON file stays what Python writes; a stale or foreign sidecar is refused") {
  fs::path d = fresh_dir("sidecar");
  Tree rng{{"rng", Tree(rnd::key_data(rnd::PRNGKey(10)))}};  // [0, 10]: fits int32
  save(d / "r.json", rng);
  std::ifstream f(d / "r.json");
  std::string text((std::istreambuf_iterator<char>(f)), {});
  CHECK(text == "{\"rng\": [0, 10]}");  // json.dumps of the same dict
  std::ifstream m(d / "r.json.meta");
  std::string meta((std::istreambuf_iterator<char>(m)), {});
  CHECK(meta == "{\"flaxpp_meta\":1,\"bytes\":16,\"dtypes\":{\"rng\":\"uint32(2,)\"}}\n");
  // A float-only tree needs no sidecar, and saving one over the file removes the old sidecar.
  save(d / "r.json", Tree{{"w", Tree(Array(1.f))}});
  CHECK(!fs::exists(d / "r.json.meta"));
  // A sidecar that does not belong to the file is an error naming both.
  save(d / "s.json", rng);
  std::ofstream(d / "s.json", std::ios::trunc) << "{\"rng\": [0, 11]}";  // 16 bytes too
  CHECK(load(d / "s.json")["rng"].array().dtype() == DType::uint32);
  std::ofstream(d / "s.json", std::ios::trunc) << "{\"rng\": [0, 1234]}";
  expect_error<SerializationError>([&] { load(d / "s.json"); },
                                   {(d / "s.json").string(), "18 bytes", "sidecar says 16"});
  std::ofstream(d / "s.json.meta", std::ios::trunc) << "not json";
  expect_error<SerializationError>([&] { load(d / "s.json"); },
                                   {(d / "s.json.meta").string(), "is not JSON"});
}

// ---- the command-line cases: the built binaries -------------------------------------------

namespace {

struct Run {
  int status = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Runs build/bin/<exe> with args (a shell command line), in `cwd`.
Run run_bin(const std::string& exe, const std::string& args, const fs::path& cwd) {
  fs::path bin = fs::path(FLAXPP_BINARY_DIR) / "bin" / exe;
  REQUIRE_MESSAGE(fs::exists(bin), "not built: " << bin);
  fs::path out = cwd / ".stdout", err = cwd / ".stderr";
  std::string cmd = "cd '" + cwd.string() + "' && '" + bin.string() + "' " + args + " > '" +
                    out.string() + "' 2> '" + err.string() + "'";
  int rc = std::system(cmd.c_str());
  return Run{WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc), slurp(out), slurp(err)};
}

Run flaxpp_cli(const std::string& args, const fs::path& cwd) {
  return run_bin("flaxpp", args, cwd);
}

}  // namespace

TEST_CASE("#1 flaxpp random with an impossible shape: an error, no crash, nothing printed") {
  fs::path d = fresh_dir("cli_random");
  for (std::string op : {"uniform", "normal", "bits"})
    for (std::string shape : {"4294967296,4294967296", "65536,65536,65536,65536"}) {
      Run r = flaxpp_cli("random --shape " + shape + " " + op, d);
      INFO(op << " " << shape << ": " << r.err);
      CHECK(r.status == 1);
      CHECK(r.out.empty());  // no uninitialised memory printed
      CHECK(r.err == "flaxpp random: error: --shape: shape (" + shape +
                         ") has more elements than int64 can count (the product of its "
                         "dimensions overflows 2^63 - 1)\n");
    }
  Run r = flaxpp_cli("random --shape 1048576,1048576 uniform", d);  // 4 TiB: counts, cannot fit
  CHECK(r.status == 1);
  CHECK(r.out.empty());
  CHECK(r.err.find("flaxpp random: error: --shape: random.uniform: shape (1048576,1048576) of "
                   "float32 needs 4398046511104 bytes (4096.0 GiB), more than this machine's "
                   "memory and swap") == 0);
}

TEST_CASE("#7 numeric flags are strict and errors name the argument") {
  fs::path d = fresh_dir("cli_flags");
  auto err = [&](const std::string& args) {
    Run r = flaxpp_cli(args, d);
    CHECK(r.status != 0);
    CHECK(r.out.empty());
    return r.err;
  };
  CHECK(err("random --shape abc uniform") ==
        "flaxpp random: error: --shape: 'abc' is not an integer\n");
  CHECK(err("random --shape 2.5 uniform") ==
        "flaxpp random: error: --shape: '2.5' is not an integer\n");
  CHECK(err("random --shape 2,,3 uniform") ==
        "flaxpp random: error: --shape: '2,,3' has an empty dimension\n");
  CHECK(err("random --key-data 8589934593,1 uniform") ==
        "flaxpp random: error: --key-data: '8589934593' is out of range for uint32 (0 to "
        "4294967295)\n");
  CHECK(err("random --key-data 1 uniform") ==
        "flaxpp random: error: --key-data: needs two words K0,K1, got '1'\n");
  // CLI11's own options are strict too.
  CHECK(err("random --seed 2.5 uniform").find("--seed = 2.5") != std::string::npos);
  CHECK(err("random fold_in --data 8589934593").find("--data = 8589934593") != std::string::npos);
  // The model's parameters alone would not fit: refused naming the flag, before allocating.
  CHECK(err("init gmlp --num-tokens 256 --dim 32 --depth 2 --seq-len 100000 --out p.json")
            .find("flaxpp init: error: --seq-len 100000: gMLP(num_tokens=256, dim=32, depth=2, "
                  "ff_mult=4, seq_len=100000, causal) has about 2e+10 parameters (74.5 GiB of "
                  "float32), more than this machine's memory and swap") == 0);
  CHECK(!fs::exists(d / "p.json"));
}

TEST_CASE("#5 an output path naming an input file is refused, and the input is unchanged") {
  fs::path d = fresh_dir("cli_same_path");
  REQUIRE(flaxpp_cli("init gmlp --num-tokens 16 --dim 8 --depth 1 --seq-len 4 --out p.json", d)
              .status == 0);
  std::ofstream(d / "t.json") << "[1, 2, 3]";
  const std::string params = slurp(d / "p.json");
  for (std::string out : {"p.json", "./p.json", "../cli_same_path/p.json"}) {
    Run r = flaxpp_cli("apply gmlp --params p.json --tokens t.json --out " + out, d);
    CHECK(r.status == 1);
    CHECK(r.err == "flaxpp apply: error: --out: '" + out +
                       "' is the --params file 'p.json'; writing it would destroy the input "
                       "(choose another output path)\n");
  }
  Run r = flaxpp_cli("apply gmlp --params p.json --tokens t.json --out t.json --grad", d);
  CHECK(r.err.find("--out: 't.json' is the --tokens file") != std::string::npos);
  r = flaxpp_cli("convert p.json p.json", d);
  CHECK(r.err ==
        "flaxpp convert: error: OUT: 'p.json' is the IN file 'p.json'; writing it would "
        "destroy the input (choose another output path)\n");
  fs::create_symlink("p.json", d / "link.json");
  r = flaxpp_cli("convert p.json link.json", d);
  CHECK(r.status == 1);
  CHECK(slurp(d / "p.json") == params);
  CHECK(slurp(d / "t.json") == "[1, 2, 3]");
  CHECK(flaxpp_cli("apply gmlp --params p.json --tokens t.json --out o.json", d).status == 0);
}

TEST_CASE("#7 apply names the missing or misshaped entry, with and without --grad") {
  fs::path d = fresh_dir("cli_apply_entries");
  REQUIRE(flaxpp_cli("init gmlp --num-tokens 16 --dim 8 --depth 1 --seq-len 4 --out p.json", d)
              .status == 0);
  std::ofstream(d / "t.json") << "[1, 2, 3]";
  Tree p = load(d / "p.json");
  const std::string sgu = "params/layers_0/layers_0/layers_0/sgu/";
  save(d / "missing.json", p.erase(sgu + "spatial_biases"));
  save(d / "misshaped.json", p.set(sgu + "spatial_biases", Tree(jnp::zeros({3, 1}))));
  save(d / "int_bias.json",
       p.set("params/to_logits/layers_1/bias", Tree(jnp::zeros({16}, DType::int32))));
  const std::string model = "gMLP(num_tokens=16, dim=8, depth=1, ff_mult=4, seq_len=4, causal)";
  for (std::string grad : {"", " --grad"}) {
    Run r = flaxpp_cli("apply gmlp --params missing.json --tokens t.json --out o.json" + grad, d);
    CHECK(r.err == "flaxpp apply: error: missing.json: 1,048 parameters, but " + model +
                       " has 1,052: " + sgu + "spatial_biases (4,1) is missing\n");
    r = flaxpp_cli("apply gmlp --params misshaped.json --tokens t.json --out o.json" + grad, d);
    CHECK(r.err == "flaxpp apply: error: misshaped.json: 1,051 parameters, but " + model +
                       " has 1,052: " + sgu +
                       "spatial_biases has shape (3,1), the model needs "
                       "(4,1)\n");
  }
  // The same count, so the model itself finds it: with --grad the path is kept as well.
  Run r = flaxpp_cli("apply gmlp --params int_bias.json --tokens t.json --out o.json", d);
  CHECK(r.err ==
        "flaxpp apply: error: t.json (3,): to_logits/layers_1 (Dense): parameter 'bias' "
        "has dtype int32 in the variables; the module expects float32\n");
  r = flaxpp_cli("apply gmlp --params int_bias.json --tokens t.json --out o.json --grad", d);
  CHECK(r.err ==
        "flaxpp apply: error: int_bias.json: params/to_logits/layers_1/bias has dtype "
        "int32; --grad differentiates float32 parameters only\n");
}

TEST_CASE("#7 the vjp pullback refuses a cotangent that is not float32") {
  Array x = Array::vector({1.f, 2.f});
  auto [y, pullback] = vjp([](const Array& a) { return jnp::tanh(a); }, x);
  expect_error<std::invalid_argument>(
      [&, pb = pullback] {
        pb(Array::from({2}, std::vector<int32_t>{1, 1}));
      },
      {"vjp pullback", "cotangent dtype int32", "float32"});
  CHECK(std::get<0>(pullback(jnp::ones({2}))).shape() == Shape{2});
}

// ---- training directories: train_charlm on the fortunes corpus -------------------------------

namespace {

const fs::path kFortunes = "/usr/share/games/fortunes";
// A run of a few hundred milliseconds; --steps, --ckpt-every and --out-dir are added per case.
const std::string kTiny =
    "--dim 16 --depth 1 --seq-len 16 --batch 4 --threads 1 --log-every 2 --eval-every 4 "
    "--eval-windows 4 --final-eval-windows 8 --sample-len 4 ";

bool have_fortunes() {
  if (fs::exists(kFortunes)) return true;
  MESSAGE("skipped: no " << kFortunes << " (apt-get install fortunes)");
  return false;
}

Run charlm(const std::string& args, const fs::path& cwd) {
  return run_bin("train_charlm", kTiny + args, cwd);
}

std::vector<int64_t> steps_in(const fs::path& dir) { return training::checkpoint_steps(dir); }

}  // namespace

TEST_CASE("#3 a second run on the same --out-dir fails at once naming the first one's pid") {
  if (!have_fortunes()) return;
  fs::path d = fresh_dir("two_runs");
  fs::path bin = fs::path(FLAXPP_BINARY_DIR) / "bin" / "train_charlm";
  // The first run goes on for a few seconds; the second starts 0.7 s after it.
  std::string script = "cd '" + d.string() + "' && ('" + bin.string() + "' " + kTiny +
                       "--steps 2000 --ckpt-every 5 --out-dir two > first.log 2>&1 & "
                       "echo $! > first.pid; sleep 0.7; '" +
                       bin.string() + "' " + kTiny +
                       "--steps 40 --ckpt-every 5 --out-dir two > second.log 2>&1; "
                       "echo $? > second.rc; wait; echo $? > first.rc)";
  REQUIRE(std::system(script.c_str()) == 0);
  std::string pid = slurp(d / "first.pid");
  pid.erase(pid.find_last_not_of('\n') + 1);
  INFO(slurp(d / "second.log"));
  CHECK(slurp(d / "second.rc") == "1\n");
  std::string second = slurp(d / "second.log");  // after the data summary line
  CHECK(second.substr(second.find("train_charlm:")) ==
        "train_charlm: --out-dir two: another run (pid " + pid +
            ") is using this directory (it holds two/.lock); wait for it to end, or choose "
            "another --out-dir\n");
  CHECK(slurp(d / "first.rc") == "0\n");
  // The first run's work is whole: its last checkpoint and a metrics.csv of whole rows.
  CHECK(steps_in(d / "two" / "ckpt").back() == 2000);
  std::string csv = slurp(d / "two" / "metrics.csv");
  CHECK(csv.back() == '\n');
  CHECK(csv.rfind("\n2000,") != std::string::npos);
}

TEST_CASE(
    "#4 a fresh run refuses a directory with checkpoints; --overwrite keeps the old run "
    "until it has saved") {
  if (!have_fortunes()) return;
  fs::path d = fresh_dir("fresh_run");
  REQUIRE(charlm("--steps 10 --ckpt-every 5 --out-dir o", d).status == 0);
  const std::string ckpt10 = slurp(d / "o/ckpt/checkpoint_10.msgpack"),
                    metrics = slurp(d / "o/metrics.csv");
  Run r = charlm("--steps 10 --ckpt-every 5 --out-dir o", d);
  CHECK(r.status == 1);
  CHECK(r.err.find("train_charlm: --out-dir o: o/ckpt holds 2 checkpoint(s) of an earlier run "
                   "(steps 5 to 10); pass --resume to continue it, or --overwrite to start "
                   "afresh") != std::string::npos);
  CHECK(slurp(d / "o/ckpt/checkpoint_10.msgpack") == ckpt10);  // nothing touched
  CHECK(slurp(d / "o/metrics.csv") == metrics);
  // --overwrite killed (SIGKILL) after moving the old run aside, long before its first
  // checkpoint (--ckpt-every 100000): the old run is still there, beside the empty new one.
  fs::path bin = fs::path(FLAXPP_BINARY_DIR) / "bin" / "train_charlm";
  std::string script =
      "cd '" + d.string() + "' && ('" + bin.string() + "' " + kTiny +
      "--steps 100000 --ckpt-every 100000 --overwrite --out-dir o 2> kill.log "
      ">/dev/null & pid=$!; i=0; while ! grep -q moved kill.log && [ $i -lt 600 ]; "
      "do sleep 0.05; i=$((i+1)); done; kill -9 $pid; wait $pid; true)";
  REQUIRE(std::system(script.c_str()) == 0);
  CHECK(slurp(d / "kill.log")
            .find("--overwrite: moved 2 checkpoint(s) of the earlier run to "
                  "o/ckpt/replaced") != std::string::npos);
  CHECK(steps_in(d / "o/ckpt").empty());
  CHECK(slurp(d / "o/ckpt/replaced/checkpoint_10.msgpack") == ckpt10);  // the old run is kept
  CHECK(slurp(d / "o/metrics.csv.replaced") == metrics);
  // A second --overwrite that saves: then the old run goes.
  r = charlm("--steps 6 --ckpt-every 5 --overwrite --out-dir o", d);
  CHECK(r.status == 0);
  CHECK(steps_in(d / "o/ckpt") == std::vector<int64_t>{5, 6});
  CHECK(!fs::exists(d / "o/ckpt/replaced"));
  CHECK(!fs::exists(d / "o/metrics.csv.replaced"));
  CHECK(charlm("--steps 6 --resume --overwrite --out-dir o", d).status != 0);
}

TEST_CASE("#2 a checkpoint converted to JSON and back resumes") {
  if (!have_fortunes()) return;
  fs::path d = fresh_dir("convert_resume");
  REQUIRE(charlm("--steps 10 --seed 10 --ckpt-every 5 --out-dir s10", d).status == 0);
  REQUIRE(flaxpp_cli("convert s10/ckpt/checkpoint_10.msgpack c.json", d).status == 0);
  CHECK(slurp(d / "c.json.meta").find("\"rng\":\"uint32(2,)\"") != std::string::npos);
  fs::remove(d / "s10/ckpt/checkpoint_10.msgpack");
  fs::remove(d / "s10/ckpt/checkpoint_10.msgpack.meta");
  REQUIRE(flaxpp_cli("convert c.json s10/ckpt/checkpoint_10.msgpack", d).status == 0);
  Run r = charlm("--steps 12 --seed 10 --ckpt-every 5 --resume --out-dir s10", d);
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.err.find("resumed from s10/ckpt/checkpoint_10.msgpack (step 10)") != std::string::npos);
}

TEST_CASE("checksums: --resume skips a corrupt newest checkpoint, saying why; --resume-step") {
  if (!have_fortunes()) return;
  fs::path d = fresh_dir("checksum_resume");
  REQUIRE(charlm("--steps 10 --ckpt-every 5 --out-dir o", d).status == 0);
  fs::path newest = d / "o/ckpt/checkpoint_10.msgpack";
  std::string bytes = slurp(newest);
  bytes[bytes.size() / 2] ^= 1;  // one bit: msgpack would still parse it
  std::ofstream(newest, std::ios::binary | std::ios::trunc) << bytes;
  CHECK(verify_checksum(newest).find("checksum mismatch") == 0);
  Run r = charlm("--steps 12 --ckpt-every 5 --resume --out-dir o", d);
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.err.find("--resume: skipped o/ckpt/checkpoint_10.msgpack: load: "
                   "o/ckpt/checkpoint_10.msgpack: checksum mismatch: the file's CRC32C is ") !=
        std::string::npos);
  CHECK(r.err.find("resumed from o/ckpt/checkpoint_5.msgpack (step 5)") != std::string::npos);
  r = charlm("--steps 12 --ckpt-every 5 --resume-step 5 --out-dir o", d);
  CHECK(r.err.find("resumed from o/ckpt/checkpoint_5.msgpack (step 5, --resume-step)") !=
        std::string::npos);
  r = charlm("--steps 12 --resume-step 7 --out-dir o", d);
  CHECK(r.status != 0);
  CHECK(r.err.find("restore_checkpoint: no o/ckpt/checkpoint_7.msgpack (steps in o/ckpt: ") !=
        std::string::npos);
}

TEST_CASE("#7 a stray checkpoint name is an error naming the file; stale temp files are removed") {
  if (!have_fortunes()) return;
  fs::path d = fresh_dir("stray");
  REQUIRE(charlm("--steps 5 --ckpt-every 5 --out-dir o", d).status == 0);
  std::ofstream(d / "o/ckpt/checkpoint_99999999999999999999.msgpack") << "x";
  for (std::string resume : {"", "--resume "}) {
    Run r = charlm("--steps 6 " + resume + "--out-dir o", d);
    CHECK(r.status == 1);
    CHECK(r.err.find("train_charlm: checkpoint_steps: "
                     "o/ckpt/checkpoint_99999999999999999999.msgpack: step "
                     "99999999999999999999 does not fit int64; rename or remove this file") !=
          std::string::npos);
  }
  fs::remove(d / "o/ckpt/checkpoint_99999999999999999999.msgpack");
  // What a killed save leaves: removed at start (the run holds the directory's lock).
  std::ofstream(d / "o/ckpt/.checkpoint_7.msgpack.tmp-1234-0badf00d") << "partial";
  std::ofstream(d / "o/.params.json.tmp-99-abcdef01") << "partial";
  std::ofstream(d / "o/ckpt/.not-a-temp-file") << "kept";
  Run r = charlm("--steps 6 --resume --out-dir o", d);
  CHECK(r.status == 0);
  CHECK(r.err.find("removed o/ckpt/.checkpoint_7.msgpack.tmp-1234-0badf00d (left by a save that "
                   "was killed)") != std::string::npos);
  CHECK(!fs::exists(d / "o/.params.json.tmp-99-abcdef01"));
  CHECK(fs::exists(d / "o/ckpt/.not-a-temp-file"));
}

TEST_CASE("restore_newest_valid reports what it skipped; restore_checkpoint stays strict") {
  fs::path d = fresh_dir("newest_valid");
  auto state = training::TrainState::create(Tree{{"w", Tree(jnp::ones({3}))}}, optax::sgd(0.1f),
                                            rnd::PRNGKey(1));
  for (int64_t s : {1, 2, 3}) {
    state.step = s;
    training::save_checkpoint(d, state, s, /*keep=*/5);
  }
  std::ofstream(training::checkpoint_path(d, 3), std::ios::trunc) << "garbage";
  training::RestoreReport report;
  CHECK(training::restore_newest_valid(d, state, report).step == 2);
  CHECK(report.restored == training::checkpoint_path(d, 2));
  REQUIRE(report.skipped.size() == 1);
  CHECK(report.skipped[0].first == training::checkpoint_path(d, 3));
  CHECK(report.skipped[0].second.find("7 bytes, its sidecar says") != std::string::npos);
  CHECK_THROWS_AS(training::restore_checkpoint(d, state), SerializationError);
  fs::remove(training::checkpoint_path(d, 2));
  fs::remove(training::checkpoint_path(d, 1));
  expect_error<SerializationError>([&] { training::restore_newest_valid(d, state, report); },
                                   {"no checkpoint in", "loads", "checkpoint_3.msgpack"});
}
