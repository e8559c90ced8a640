// TrainState: one-call apply_gradients, checkpoints (atomic, keep-k, validated restore), resume
// equivalence, a tiny model overfitting a tiny batch, and run-to-run determinism.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "core/autodiff.hpp"
#include "serialization/serialization.hpp"
#include "models/gmlp.hpp"
#include "nn/losses.hpp"
#include "training/train_state.hpp"

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
  Array loss(const Tree& p) const { return models::next_token_loss(model.apply(Tree{{"params", p}}, tokens), tokens); }
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
  CHECK(first > 2.5f);   // about log(16) = 2.77 at init
  CHECK(last < 0.5f);    // memorised: far below the uniform-prediction loss
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
  auto tx = optax::chain({optax::clip_by_global_norm(1.0), optax::adam(optax::cosine_decay_schedule(1e-2, 100))});
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
  auto other_state = training::TrainState::create(other.init(random::PRNGKey(0), su.tokens)["params"], tx);
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
                       doctest::Contains("no checkpoint_<step>.msgpack file in"), SerializationError);
}
