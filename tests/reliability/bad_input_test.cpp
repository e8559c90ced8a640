// The bad-input contract, case by case: every misuse throws a typed exception whose message names
// what is at fault (the module or '/'-path, the shapes, dtypes or value), and no file that existed
// before the failing call changes (byte for byte).
//
//   wrong shapes between layers / misshaped params  nn::ModuleError      module path + both shapes
//   wrong input rank or dtype, token ids out of range nn::ModuleError    module path + the input
//   missing parameter at apply                        nn::ModuleError    module path + variable path
//   extra parameter at apply                          ignored, as Flax does
//   rng stream not supplied                           nn::ModuleError    module path + stream name
//   mismatched op shapes, labels out of range         std::invalid_argument  op + shapes / label
//   NaN / Inf (opt-in: check_finite)                  std::runtime_error '/'-path + index + value
//   missing / extra / misshaped / mistyped in a file  SerializationError  file + '/'-path + both sides
//   truncated or corrupt files                        SerializationError  file + where it broke
//   unwritable output path                            SerializationError  path + OS reason
#include <cmath>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <sstream>
#include <string>

#include <doctest/doctest.h>

#include "core/debug.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "models/gmlp.hpp"
#include "nn/losses.hpp"
#include "nn/nn.hpp"
#include "serialization/serialization.hpp"
#include "tests/reliability/expect_error.hpp"
#include "training/train_state.hpp"

using namespace flaxpp;
namespace fs = std::filesystem;
namespace rnd = flaxpp::random;

namespace {

struct MLP : nn::Module<MLP> {
  std::vector<int64_t> features;
  Array operator()(nn::Scope& s, Array x) const {
    for (size_t i = 0; i + 1 < features.size(); ++i)
      x = nn::relu(s(nn::Dense{.features = features[i]}, x));
    return s(nn::Dense{.features = features.back()}, x);
  }
};

struct DropoutMLP : nn::Module<DropoutMLP> {
  Array operator()(nn::Scope& s, const Array& x, bool train) const {
    return s(nn::Dropout{.rate = 0.5}, s(nn::Dense{.features = 3}, x), !train);
  }
};

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(FLAXPP_BINARY_DIR) / "test_tmp" / "reliability" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}
void write_bytes(const fs::path& p, const std::string& b) {
  std::ofstream(p, std::ios::binary) << b;
}

// Every regular file under a directory and its bytes: taken before a failing call, compared after.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) m[e.path().string()] = read_bytes(e.path());
  return m;
}

Array nan_f() { return Array(std::numeric_limits<float>::quiet_NaN()); }

}  // namespace

TEST_CASE("modules: wrong shapes between layers and misshaped parameters") {
  Array x = jnp::ones({2, 4});
  MLP model{.features = {3, 2}};
  Tree vars = model.init(rnd::PRNGKey(0), x);

  // A Dense applied to parameters of another size (input width 5, kernel made for 4).
  nn::Dense dense{.features = 3};
  Tree dv = dense.init(rnd::PRNGKey(0), x);
  CHECK_THROWS_WITH_AS(dense.apply(dv, jnp::ones({2, 5})),
                       "<root> (Dense): parameter 'kernel' has shape (4,3) in the variables; the "
                       "module expects (5,3)",
                       nn::ModuleError);
  // A layer whose parameters came from another model: Dense_1 now holds a (4, 2) kernel.
  Tree swapped = vars.set("params/Dense_1/kernel", jnp::ones({4, 2}));
  CHECK_THROWS_WITH_AS(model.apply(swapped, x),
                       "Dense_1 (Dense): parameter 'kernel' has shape (4,2) in the variables; the "
                       "module expects (3,2)",
                       nn::ModuleError);
  // A parameter of the right shape and the wrong dtype.
  Tree int_bias = vars.set("params/Dense_0/bias", Array::from({3}, std::vector<int32_t>{0, 0, 0}));
  CHECK_THROWS_WITH_AS(model.apply(int_bias, x),
                       "Dense_0 (Dense): parameter 'bias' has dtype int32 in the variables; the "
                       "module expects float32",
                       nn::ModuleError);
  // The primitive underneath names the op and both shapes.
  expect_error<std::invalid_argument>(
      [] {
        jnp::matmul(jnp::ones({2, 3}), jnp::ones({4, 5}));
      },
      {"matmul", "(2,3)", "(4,5)"});
  expect_error<std::invalid_argument>(
      [] {
        return jnp::ones({2, 3}) + jnp::ones({4});
      },
      {"(2,3)", "(4,)"});
}

TEST_CASE("modules: missing and extra parameters at apply") {
  Array x = jnp::ones({2, 4});
  MLP model{.features = {3, 2}};
  Tree vars = model.init(rnd::PRNGKey(0), x);
  CHECK_THROWS_WITH_AS(
      model.apply(vars.erase("params/Dense_1/bias"), x),
      "Dense_1 (Dense): parameter 'bias' is missing from the variables (expected at "
      "'params/Dense_1/bias')",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      model.apply(Tree{{"parms", vars["params"]}}, x),
      "Dense_0 (Dense): parameter 'kernel' is missing from the variables (expected at "
      "'params/Dense_0/kernel')",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      model.apply(Tree(jnp::ones({2})), x),
      "MLP: variables must be a dict of collections like {\"params\": ...}, got an array",
      nn::ModuleError);
  // Extra parameters are ignored by apply, as in Flax (restore is where they are rejected).
  Tree extra = vars.set("params/Dense_7/kernel", jnp::ones({9, 9}));
  Array y = model.apply(vars, x), y_extra = model.apply(extra, x);
  CHECK(tree_equal(Tree(y), Tree(y_extra)));
}

TEST_CASE("modules: wrong input rank or dtype, token ids out of range") {
  MLP model{.features = {3, 2}};
  Tree vars = model.init(rnd::PRNGKey(0), jnp::ones({2, 4}));
  CHECK_THROWS_WITH_AS(model.apply(vars, Array(1.f)),
                       "Dense_0 (Dense): expected a float32 input of rank >= 1, got float32 ()",
                       nn::ModuleError);
  CHECK_THROWS_WITH_AS(model.apply(vars, Array::from({2, 4}, std::vector<int32_t>(8, 1))),
                       "Dense_0 (Dense): expected a float32 input of rank >= 1, got int32 (2,4)",
                       nn::ModuleError);

  models::gMLP lm{.num_tokens = 16, .dim = 8, .depth = 1, .seq_len = 4};
  Array tokens = Array::from({1, 4}, std::vector<int32_t>{1, 2, 3, 4});
  Tree lv = lm.init(rnd::PRNGKey(0), tokens);
  CHECK_THROWS_WITH_AS(
      lm.apply(lv, Array::from({1, 4}, std::vector<int32_t>{1, 2, 16, 4})),
      "to_embed (Embed): token id 16 at flat position 2 is out of range for num_embeddings = 16 "
      "(valid: [-16, 16))",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      lm.apply(lv, Array::from({1, 4}, std::vector<int32_t>{-17, 2, 3, 4})),
      "to_embed (Embed): token id -17 at flat position 0 is out of range for num_embeddings = 16 "
      "(valid: [-16, 16))",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      lm.apply(lv, jnp::ones({1, 4})),
      "<root> (gMLP): expected int32 tokens of shape (L,) or (B, L), got float32 (1,4)",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      lm.apply(lv, Array::from({1, 1, 4}, std::vector<int32_t>{1, 2, 3, 4})),
      "<root> (gMLP): expected int32 tokens of shape (L,) or (B, L), got int32 (1,1,4)",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      lm.apply(lv, Array::from({1, 5}, std::vector<int32_t>{1, 2, 3, 4, 5})),
      "<root> (gMLP): sequence length 5 exceeds seq_len 4 (a causal model accepts any length <= "
      "seq_len)",
      nn::ModuleError);
  // Labels out of range in a loss name the label and the class count.
  expect_error<std::invalid_argument>(
      [] {
        optax::softmax_cross_entropy_with_integer_labels(
            jnp::ones({2, 3}), Array::from({2}, std::vector<int32_t>{0, 3}));
      },
      {"label 3", "3"});
}

TEST_CASE("modules: an rng stream not supplied") {
  Array x = jnp::ones({2, 4});
  DropoutMLP dm;
  Tree dv = dm.init(rnd::PRNGKey(0), x, false);
  CHECK_THROWS_WITH_AS(
      dm.apply(dv, x, true),
      "Dropout_0 (Dropout): needs the rng stream 'dropout', which was not provided (pass "
      "nn::Rngs{{\"dropout\", key}} to apply)",
      nn::ModuleError);
  CHECK_THROWS_WITH_AS(
      MLP{.features = {3}}.init(nn::Rngs{{"dropout", rnd::PRNGKey(0)}}, x),
      "Dense_0 (Dense): needs the rng stream 'params', which was not provided (pass "
      "nn::Rngs{{\"params\", key}} to init)",
      nn::ModuleError);
  // With the stream it runs.
  CHECK(dm.apply(dv, x, true, nn::Rngs{{"dropout", rnd::PRNGKey(1)}}).shape() == Shape{2, 3});
}

TEST_CASE("check_finite: NaN / Inf in inputs, losses and gradients") {
  Array x = jnp::ones({2, 4});
  MLP model{.features = {3}};
  Tree params = model.init(rnd::PRNGKey(0), x)["params"];
  auto loss = [&](const Tree& p, const Array& in) {
    return jnp::mean(jnp::square(model.apply(Tree{{"params", p}}, in)));
  };

  // Finite: nothing thrown; int and bool leaves are never checked.
  CHECK_NOTHROW(check_finite(params, "params"));
  CHECK_NOTHROW(check_finite(Tree{{"ids", Array::from({2}, std::vector<int32_t>{1, 2})}}, "batch"));

  // A NaN in the input reaches the loss and the kernel's gradient; the bias gradient stays finite
  // only where no NaN flows, so check the first leaf in insertion order (kernel).
  Array bad_x = Array::from({2, 4}, std::vector<float>{1, 1, 1, 1, 1, std::nanf(""), 1, 1});
  Array l = loss(params, bad_x);
  CHECK_THROWS_WITH_AS(
      check_finite(l, "loss"),
      "check_finite: loss: nan at index 0 [] of float32(); 1 of 1 values not finite",
      std::runtime_error);
  Tree g = grad([&](const Tree& p) { return loss(p, bad_x); })(params);
  expect_error<std::runtime_error>(
      [&] { check_finite(g, "grads"); },
      {"check_finite: grads/Dense_0/kernel: nan at index 0 [0, 0] of float32(4,3)"});

  // Inf and -Inf, with their position per axis, in a nested tree.
  const float inf = std::numeric_limits<float>::infinity();
  Tree t{{"a", Tree{{"ok", jnp::ones({3})},
                    {"w", Array::from({2, 3}, std::vector<float>{0, 0, 0, 0, -inf, inf})}}}};
  CHECK_THROWS_WITH_AS(
      check_finite(t, "grads"),
      "check_finite: grads/a/w: -inf at index 4 [1, 1] of float32(2,3); 2 of 6 values not finite",
      std::runtime_error);
  CHECK_THROWS_WITH_AS(
      check_finite(t),
      "check_finite: a/w: -inf at index 4 [1, 1] of float32(2,3); 2 of 6 values not finite",
      std::runtime_error);
  CHECK_THROWS_WITH_AS(
      check_finite(nan_f()),
      "check_finite: <root>: nan at index 0 [] of float32(); 1 of 1 values not finite",
      std::runtime_error);
}

TEST_CASE("restore: missing, extra, misshaped and mistyped parameters in a file") {
  auto dir = fresh_dir("restore");
  Array x = jnp::ones({2, 4});
  MLP model{.features = {3, 2}};
  Tree vars = model.init(rnd::PRNGKey(0), x);
  fs::path mp = dir / "vars.msgpack", js = dir / "vars.json";

  auto check_all_formats = [&](const Tree& in_file, const Tree& target,
                               std::initializer_list<std::string> pieces) {
    save(mp, in_file);
    save(js, in_file);
    auto before = snapshot(dir);
    expect_error<SerializationError>([&] { from_bytes(target, to_bytes(in_file)); }, pieces);
    expect_error<SerializationError>([&] { from_json(target, to_json(in_file)); }, pieces);
    std::string m = expect_error<SerializationError>([&] { load(mp, target); }, pieces);
    CHECK(m.find(mp.string()) != std::string::npos);
    m = expect_error<SerializationError>([&] { load(js, target); }, pieces);
    CHECK(m.find(js.string()) != std::string::npos);
    CHECK(snapshot(dir) == before);
  };
  check_all_formats(
      Tree{{"params", vars["params"].erase("Dense_1/bias")}}, vars,
      {"restore: params/Dense_1/bias: missing in file (target has array float32(2,))"});
  check_all_formats(
      vars.set("params/Dense_1/extra", jnp::ones({2})), vars,
      {"restore: params/Dense_1/extra: unexpected in file (array float32(2,), not in target"});
  check_all_formats(vars.set("params/Dense_0/kernel", jnp::ones({4, 4})), vars,
                    {"restore: params/Dense_0/kernel: shape (4,4) in file, (4,3) in target"});
  check_all_formats(
      vars.set("params/Dense_0/bias", Array::from({3}, std::vector<int32_t>{1, 2, 3})), vars,
      {"restore: params/Dense_0/bias: dtype int32 in file, float32 in target"});
  check_all_formats(vars.set("params/Dense_0", jnp::ones({3})), vars,
                    {"restore: params/Dense_0: array float32(3,) in file, dict with keys [kernel, "
                     "bias] in target"});
  // allow_extra ignores keys the target lacks, nothing else.
  Tree extra = vars.set("params/Dense_1/extra", jnp::ones({2}));
  CHECK(tree_equal(from_bytes(vars, to_bytes(extra), {.allow_extra = true}), vars));
}

TEST_CASE("restore_checkpoint: another model's checkpoint, none at all, a corrupt newest file") {
  auto dir = fresh_dir("restore_checkpoint");
  Array x = jnp::ones({2, 4});
  Tree small = MLP{.features = {3, 2}}.init(rnd::PRNGKey(0), x)["params"];
  Tree wide = MLP{.features = {5, 2}}.init(rnd::PRNGKey(0), x)["params"];
  auto state = training::TrainState::create(small, optax::adam(1e-3), rnd::PRNGKey(1));
  auto other = training::TrainState::create(wide, optax::adam(1e-3), rnd::PRNGKey(1));

  expect_error<SerializationError>(
      [&] { training::restore_checkpoint(dir, state); },
      {"restore_checkpoint: no checkpoint_<step>.msgpack file in " + dir.string()});
  auto p1 = training::save_checkpoint(dir, other, 1, /*keep=*/5);
  auto before = snapshot(dir);
  expect_error<SerializationError>(
      [&] { training::restore_checkpoint(dir, state); },
      {p1.string(), "restore: params/Dense_0/kernel: shape (4,5) in file, (4,3) in target"});
  CHECK(snapshot(dir) == before);

  // A corrupt newest checkpoint fails naming its file; the older one still restores by step.
  auto p2 = training::save_checkpoint(dir, state, 2, 5);
  auto p3 = training::checkpoint_path(dir, 3);
  std::string good = read_bytes(p2);
  write_bytes(p3, good.substr(0, good.size() / 2));
  before = snapshot(dir);
  expect_error<SerializationError>([&] { training::restore_checkpoint(dir, state); },
                                   {p3.string(), "truncated input"});
  CHECK(training::restore_checkpoint(dir, state, 2).step == 0);
  CHECK(snapshot(dir) == before);
}

TEST_CASE("truncated and corrupt checkpoint files") {
  auto dir = fresh_dir("corrupt");
  Tree vars = MLP{.features = {3, 2}}.init(rnd::PRNGKey(0), jnp::ones({2, 4}));
  const auto bytes = to_bytes(vars);
  const std::string json = to_json(vars);

  // Every strict prefix of a msgpack file is an error (msgpack is self-delimiting), never a tree.
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::span<const uint8_t> prefix(bytes.data(), n);
    std::string msg;
    try {
      from_bytes(prefix);
    } catch (const SerializationError& e) {
      msg = e.what();
    }
    REQUIRE_MESSAGE(!msg.empty(), "a " << n << "-byte prefix of " << bytes.size() << " loaded");
    try {
      from_bytes(vars, prefix);
    } catch (const SerializationError&) {
      continue;
    }
    FAIL("a " << n << "-byte prefix loaded against the target");
  }
  // ... and of a JSON file.
  for (size_t n = 0; n < json.size(); ++n) {
    bool threw = false;
    try {
      from_json(vars, std::string_view(json).substr(0, n));
    } catch (const SerializationError&) {
      threw = true;
    }
    REQUIRE_MESSAGE(threw, "a " << n << "-character JSON prefix loaded");
  }

  fs::path p = dir / "vars.msgpack";
  save(p, vars);
  std::string good = read_bytes(p);
  write_bytes(dir / "truncated.msgpack", good.substr(0, good.size() - 7));
  write_bytes(dir / "empty.msgpack", "");
  std::string bad_dtype = good;
  bad_dtype.replace(bad_dtype.find("float32"), 7, "float64");
  write_bytes(dir / "float64.msgpack", bad_dtype);
  std::string garbage = good;
  garbage[0] = '\xc1';  // the one byte msgpack never uses
  write_bytes(dir / "garbage.msgpack", garbage);
  write_bytes(dir / "truncated.json", json.substr(0, json.size() / 2));
  write_bytes(dir / "not.json", "{\"params\": {\"Dense_0\": [1, 2,, 3]}}");
  auto before = snapshot(dir);

  expect_error<SerializationError>(
      [&] { load(dir / "truncated.msgpack", vars); },
      {"load: " + (dir / "truncated.msgpack").string(), "truncated input"});
  expect_error<SerializationError>(
      [&] { load(dir / "empty.msgpack"); },
      {"load: " + (dir / "empty.msgpack").string(), "truncated input"});
  expect_error<SerializationError>([&] { load(dir / "float64.msgpack", vars); },
                                   {(dir / "float64.msgpack").string(), "params/Dense_0/kernel",
                                    "dtype 'float64' is not supported"});
  expect_error<SerializationError>(
      [&] { load(dir / "garbage.msgpack"); },
      {(dir / "garbage.msgpack").string(), "unexpected msgpack an invalid byte"});
  expect_error<SerializationError>(
      [&] { load(dir / "truncated.json", vars); },
      {(dir / "truncated.json").string(), "from_json: line 1, column"});
  expect_error<SerializationError>(
      [&] { load(dir / "not.json"); },
      {(dir / "not.json").string(), "params/Dense_0: expected a number"});
  expect_error<SerializationError>(
      [&] { load(dir / "missing.msgpack"); },
      {"load: " + (dir / "missing.msgpack").string(), "cannot open", "No such file"});
  expect_error<SerializationError>([&] { load(dir / "vars.npz"); },
                                   {"unknown checkpoint format '.npz'"});
  CHECK(snapshot(dir) == before);
  // Note: a flipped bit inside array data is not detectable (Flax's format has no checksum);
  // it loads with a changed value. Structure, shapes and dtypes are always validated.
}

TEST_CASE("unwritable output paths leave every existing file intact") {
  auto dir = fresh_dir("unwritable");
  Tree vars = MLP{.features = {3, 2}}.init(rnd::PRNGKey(0), jnp::ones({2, 4}));
  fs::path existing = dir / "model.msgpack", blocker = dir / "blocker";
  save(existing, vars);
  write_bytes(blocker, "a regular file, not a directory");
  auto before = snapshot(dir);

  // Tests run as root, where permissions do not stop writes: use paths that cannot exist.
  fs::path under_file = blocker / "model.msgpack";
  expect_error<SerializationError>(
      [&] { save(under_file, vars); },
      {"save: " + under_file.string(), "cannot create a temporary file", "Not a directory"});
  fs::path no_dir = dir / "no" / "such" / "dir" / "model.json";
  expect_error<SerializationError>([&] { save(no_dir, vars); },
                                   {"save: " + no_dir.string(), "No such file or directory"});
  expect_error<SerializationError>(
      [&] {
        training::save_checkpoint(blocker / "ckpt",
                                  training::TrainState::create(vars["params"], optax::sgd(0.1)), 1);
      },
      {"save_checkpoint: cannot create directory " + (blocker / "ckpt").string()});
  expect_error<SerializationError>([&] { save(dir / "model.bin", vars); },
                                   {"unknown checkpoint format '.bin'"});
  // A serialization error midway (NaN with allow_nan = false) keeps the old file and no temp.
  fs::path json = dir / "model.json";
  save(json, vars);
  before = snapshot(dir);
  Tree with_nan =
      vars.set("params/Dense_1/bias", Array::from({2}, std::vector<float>{0, std::nanf("")}));
  expect_error<SerializationError>(
      [&] { save(json, with_nan, {.json = {.allow_nan = false}}); },
      {"save: " + json.string(), "params/Dense_1/bias: NaN is not valid JSON"});
  CHECK(snapshot(dir) == before);  // also: no temporary file left behind
  CHECK(tree_equal(load(existing, vars), vars));
}
