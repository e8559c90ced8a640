// flax.training.train_state.TrainState and flax.training.checkpoints, for optax-style optimizers.
//
//   auto state = training::TrainState::create(variables["params"], optax::adam(1e-3), key);
//   auto [loss, grads] = value_and_grad(loss_fn)(state.params, batch);
//   state = state.apply_gradients(grads);                    // step + 1, params and opt_state
//   training::save_checkpoint("ckpt", state, state.step, /*keep=*/3);   // ckpt/checkpoint_<step>.msgpack
//   state = training::restore_checkpoint("ckpt", state);     // latest, validated against `state`
//
// A checkpoint is Flax msgpack of {"step": int32, "params": ..., "opt_state": ..., "rng":
// uint32 (2,)} (Flax's TrainState state dict plus our rng key; "ema_params" after "opt_state"
// when the state keeps an EMA), written atomically with a CRC32C in its `.meta` sidecar
// (serialization.hpp; Flax reads the .msgpack as before); `keep` removes older checkpoint files
// (never the one just written). Restoring checks the checksum and every path, shape and dtype
// against the target state and throws SerializationError naming the file and the path. Without
// a step, restore_checkpoint takes the newest checkpoint that loads, skipping (and reporting)
// newer ones that do not verify.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/random.hpp"
#include "../core/tree.hpp"
#include "../optax/optax.hpp"

namespace flaxpp::training {

struct TrainState {
  int64_t step = 0;
  Tree params;
  Tree opt_state;
  random::Key rng{};
  optax::GradientTransformation tx;
  // An exponential moving average of the params, kept when ema_decay is set (with_ema):
  // after each step ema_params = decay * ema_params + (1 - decay) * params (optax's
  // incremental_update with step size 1 - decay), for evaluation with the averaged weights.
  std::optional<double> ema_decay;
  Tree ema_params;

  static TrainState create(Tree params, optax::GradientTransformation tx, random::Key rng = {});
  // This state with an EMA of the params starting from the current ones; decay in [0, 1).
  TrainState with_ema(double decay) const;
  // One optimizer step: new params, new opt_state, step + 1 (rng unchanged).
  TrainState apply_gradients(const Tree& grads) const;
  // A fresh key for this step, as jax.random.fold_in(rng, step) (does not change the state).
  random::Key step_rng() const;

  Tree state_dict() const;
  // This state with values from `state_dict` (validated against this state's structure).
  TrainState with_state_dict(const Tree& state_dict) const;
};

std::filesystem::path checkpoint_path(const std::filesystem::path& dir, int64_t step,
                                      const std::string& prefix = "checkpoint_");
// Steps of the checkpoints in `dir`, ascending. A checkpoint name whose step does not fit int64
// throws SerializationError naming the file.
std::vector<int64_t> checkpoint_steps(const std::filesystem::path& dir,
                                      const std::string& prefix = "checkpoint_");
std::filesystem::path save_checkpoint(const std::filesystem::path& dir, const TrainState& state,
                                      int64_t step, int keep = 1,
                                      const std::string& prefix = "checkpoint_");
// What restore_checkpoint did: the file it restored and each newer one it skipped, with why.
struct RestoreReport {
  std::filesystem::path restored;
  std::vector<std::pair<std::filesystem::path, std::string>> skipped;
};
// The newest checkpoint (or the one at `step`, listing the steps there are if it is missing);
// throws if there is none or it does not load.
TrainState restore_checkpoint(const std::filesystem::path& dir, const TrainState& target,
                              std::optional<int64_t> step = std::nullopt,
                              const std::string& prefix = "checkpoint_");
// The newest checkpoint that loads: a newer file whose checksum, byte count or contents fail is
// skipped and listed in `report`; throws if there is none, or if none loads (naming each file
// and why).
TrainState restore_newest_valid(const std::filesystem::path& dir, const TrainState& target,
                                RestoreReport& report, const std::string& prefix = "checkpoint_");
// Removes what a killed save left in `dir` (`.NAME.tmp-PID-XXXXXXXX` files, serialization.hpp);
// returns their paths. Only safe while no other process saves into `dir`.
std::vector<std::filesystem::path> remove_stale_temp_files(const std::filesystem::path& dir);

}  // namespace flaxpp::training
