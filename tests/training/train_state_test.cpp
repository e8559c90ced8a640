// TrainState: one-call apply_gradients, checkpoints (atomic, keep-k, validated restore), resume
// equivalence, a tiny model overfitting a tiny batch, and run-to-run determinism.
#include "training/train_state.hpp"

#include <filesystem>
#include <fstream>

#include <doctest/doctest.h>

#include "core/autodiff.hpp"
#include "models/gmlp.hpp"
#include "nn/losses.hpp"
#include "serialization/serialization.hpp"

using namespace flaxpp;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(FLAXPP_BINARY_DIR) / "test_tmp" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A tiny causal spatial gMLP language model and a fixed batch.
struct Setup {
  models::gMLP model{.num_tokens = 16, .dim = 16, .depth = 1, .seq_len = 8};
  Array tokens = random::randint(random::PRNGKey(1), {4, 8}, 0, 16);
  Tree params = model.init(random::PRNGKey(0), tokens)["params"];
  Array loss(const Tree& p) const {
    return models::next_token_loss(model.apply(Tree{{"params", p}}, tokens), tokens);
  }
  training::TrainState step(const training::TrainState& s) const {
    auto g = grad([&](const Tree& p) { return loss(p); })(s.params);
    return s.apply_gradients(g);
  }
};

}  // namespace

TEST_CASE("a tiny gMLP overfits a tiny batch") {
  Setup su;
  auto state = training::TrainState::create(su.params, optax::adam(3e-2), random::PRNGKey(7));
  float first = su.loss(state.params).item<float>();
  for (int i = 0; i < 60; ++i) state = su.step(state);
  float last = su.loss(state.params).item<float>();
  MESSAGE("loss " << first << " -> " << last << " after 60 Adam steps");
  CHECK(first > 2.5f);  // about log(16) = 2.77 at init
  CHECK(last < 0.5f);   // memorised: far below the uniform-prediction loss
  CHECK(state.step == 60);
}

TEST_CASE("same seed, same losses, bit for bit") {
  auto run = [] {
    Setup su;
    auto state = training::TrainState::create(su.params, optax::adamw(1e-2), random::PRNGKey(3));
    std::vector<float> losses;
    for (int i = 0; i < 5; ++i) {
      losses.push_back(su.loss(state.params).item<float>());
      state = su.step(state);
    }
    return losses;
  };
  CHECK(run() == run());
}

TEST_CASE("save -> restore -> identical next step; keep-k; bad checkpoints") {
  Setup su;
  auto dir = fresh_dir("train_state");
  auto tx = optax::chain(
      {optax::clip_by_global_norm(1.0), optax::adam(optax::cosine_decay_schedule(1e-2, 100))});
  auto state = training::TrainState::create(su.params, tx, random::PRNGKey(5));
  for (int i = 0; i < 3; ++i) {
    state = su.step(state);
    training::save_checkpoint(dir, state, state.step, /*keep=*/2);
  }
  CHECK(training::checkpoint_steps(dir) == std::vector<int64_t>{2, 3});

  auto fresh = training::TrainState::create(su.params, tx, random::PRNGKey(0));
  auto restored = training::restore_checkpoint(dir, fresh);
  CHECK(restored.step == 3);
  CHECK(restored.rng == random::PRNGKey(5));
  CHECK(tree_equal(restored.params, state.params));
  CHECK(tree_equal(restored.opt_state, state.opt_state));
  auto a = su.step(state), b = su.step(restored);
  CHECK(tree_equal(a.params, b.params));  // the resumed run continues bit for bit
  CHECK(tree_equal(a.opt_state, b.opt_state));

  // A corrupt newest checkpoint gives a clear error; the previous one still loads.
  auto newest = training::checkpoint_path(dir, 3);
  { std::ofstream(newest, std::ios::binary | std::ios::trunc) << "not msgpack"; }
  CHECK_THROWS_AS(training::restore_checkpoint(dir, fresh), SerializationError);
  try {
    training::restore_checkpoint(dir, fresh);
  } catch (const SerializationError& e) {
    CHECK(std::string(e.what()).find("checkpoint_3.msgpack") != std::string::npos);
  }
  CHECK(training::restore_checkpoint(dir, fresh, 2).step == 2);

  // A checkpoint of a different model names the mismatching path and both shapes.
  models::gMLP other{.num_tokens = 16, .dim = 8, .depth = 1, .seq_len = 8};
  auto other_state =
      training::TrainState::create(other.init(random::PRNGKey(0), su.tokens)["params"], tx);
  try {
    training::restore_checkpoint(dir, other_state, 2);
    FAIL("restoring a mismatched checkpoint must throw");
  } catch (const SerializationError& e) {
    std::string msg = e.what();
    CHECK(msg.find("params/") != std::string::npos);
    CHECK(msg.find("(16,16)") != std::string::npos);
    CHECK(msg.find("(16,8)") != std::string::npos);
  }
  CHECK_THROWS_WITH_AS(training::restore_checkpoint(fresh_dir("empty"), fresh),
                       doctest::Contains("no checkpoint_<step>.msgpack file in"),
                       SerializationError);
}

TEST_CASE("EMA of the params: 10 steps against the rule, in the checkpoint") {
  // ema = decay * ema + (1 - decay) * params after each step (optax.incremental_update with step
  // size 1 - decay), from ema = params. Reference in double; 1e-6 relative: the params are
  // float32 and each step adds three float32 roundings to the average (about 2^-24 each).
  Tree p{{"w", Array::vector({1.f, -2.f, 0.5f})}};
  const double decay = 0.9;
  auto state = training::TrainState::create(p, optax::sgd(0.1)).with_ema(decay);
  std::vector<double> w{1, -2, 0.5}, ema = w;
  for (int t = 0; t < 10; ++t) {
    std::vector<float> g{0.3f * t, -0.2f, 0.1f * (t % 3)};
    state = state.apply_gradients(Tree{{"w", Array::from({3}, g)}});
    for (int i = 0; i < 3; ++i) {
      w[i] -= static_cast<float>(0.1) * g[i];
      ema[i] = decay * ema[i] + (1 - decay) * w[i];
    }
  }
  auto got = state.ema_params.at("w").array().to_float();
  for (int i = 0; i < 3; ++i) CHECK(got[i] == doctest::Approx(ema[i]).epsilon(1e-6));
  CHECK(state.state_dict().keys() ==
        std::vector<std::string>{"step", "params", "opt_state", "ema_params", "rng"});
  // Without an EMA the checkpoint layout is unchanged.
  CHECK(training::TrainState::create(p, optax::sgd(0.1)).state_dict().keys() ==
        std::vector<std::string>{"step", "params", "opt_state", "rng"});
  auto dir = fresh_dir("train_state_ema");
  training::save_checkpoint(dir, state, state.step);
  auto fresh = training::TrainState::create(p, optax::sgd(0.1)).with_ema(decay);
  auto restored = training::restore_checkpoint(dir, fresh);
  CHECK(tree_equal(restored.ema_params, state.ema_params));
  CHECK_THROWS_WITH_AS(fresh.with_ema(1.0),
                       "TrainState::with_ema: decay must be in [0, 1), got 1.000000",
                       std::invalid_argument);
}
