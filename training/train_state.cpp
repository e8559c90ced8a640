#include "training/train_state.hpp"

#include <algorithm>
#include <stdexcept>

#include "serialization/serialization.hpp"

namespace flaxpp::training {

TrainState TrainState::create(Tree params, optax::GradientTransformation tx, random::Key rng) {
  TrainState s;
  s.opt_state = tx.init(params);
  s.params = std::move(params);
  s.tx = std::move(tx);
  s.rng = rng;
  return s;
}

TrainState TrainState::with_ema(double decay) const {
  if (!(decay >= 0 && decay < 1))
    throw std::invalid_argument("TrainState::with_ema: decay must be in [0, 1), got " +
                                std::to_string(decay));
  TrainState s = *this;
  s.ema_decay = decay;
  s.ema_params = params;
  return s;
}

TrainState TrainState::apply_gradients(const Tree& grads) const {
  auto [updates, new_opt] = tx.update(grads, opt_state, params);
  TrainState next = *this;
  next.params = optax::apply_updates(params, updates);
  next.opt_state = std::move(new_opt);
  if (ema_decay) next.ema_params = optax::incremental_update(next.params, ema_params, 1 - *ema_decay);
  next.step = step + 1;
  return next;
}

random::Key TrainState::step_rng() const { return random::fold_in(rng, static_cast<uint32_t>(step)); }

Tree TrainState::state_dict() const {
  std::vector<Tree::Item> items{{"step", Array(static_cast<int32_t>(step))},
                                {"params", params},
                                {"opt_state", opt_state}};
  if (ema_decay) items.emplace_back("ema_params", ema_params);
  items.emplace_back("rng", random::key_data(rng));
  return Tree::dict(std::move(items));
}

TrainState TrainState::with_state_dict(const Tree& sd) const {
  Tree v = from_state_dict(state_dict(), sd);
  TrainState s = *this;
  s.step = v["step"].array().item<int64_t>();
  s.params = v["params"];
  s.opt_state = v["opt_state"];
  if (ema_decay) s.ema_params = v["ema_params"];
  const uint32_t* k = v["rng"].array().data<uint32_t>();
  s.rng = random::wrap_key_data(k[0], k[1]);
  return s;
}

std::filesystem::path checkpoint_path(const std::filesystem::path& dir, int64_t step, const std::string& prefix) {
  return dir / (prefix + std::to_string(step) + ".msgpack");
}

std::vector<int64_t> checkpoint_steps(const std::filesystem::path& dir, const std::string& prefix) {
  std::vector<int64_t> steps;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return steps;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string ext = ".msgpack";
    if (name.size() < prefix.size() + ext.size() || name.compare(name.size() - ext.size(), ext.size(), ext) != 0) continue;
    std::string rest = name.substr(prefix.size(), name.size() - prefix.size() - ext.size());
    if (rest.empty() || !std::all_of(rest.begin(), rest.end(), ::isdigit)) continue;  // skips temp files
    steps.push_back(std::stoll(rest));
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

std::filesystem::path save_checkpoint(const std::filesystem::path& dir, const TrainState& state, int64_t step, int keep,
                                      const std::string& prefix) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw SerializationError("save_checkpoint: cannot create directory " + dir.string() + ": " + ec.message());
  auto path = checkpoint_path(dir, step, prefix);
  save(path, state.state_dict());
  if (keep > 0) {
    auto steps = checkpoint_steps(dir, prefix);
    for (size_t i = 0; i + static_cast<size_t>(keep) < steps.size(); ++i)
      if (steps[i] != step) std::filesystem::remove(checkpoint_path(dir, steps[i], prefix), ec);
  }
  return path;
}

TrainState restore_checkpoint(const std::filesystem::path& dir, const TrainState& target, std::optional<int64_t> step,
                              const std::string& prefix) {
  if (!step) {
    auto steps = checkpoint_steps(dir, prefix);
    if (steps.empty()) throw SerializationError("restore_checkpoint: no " + prefix + "<step>.msgpack file in " + dir.string());
    step = steps.back();
  }
  auto path = checkpoint_path(dir, *step, prefix);
  Tree sd = load(path, target.state_dict());
  return target.with_state_dict(sd);
}

}  // namespace flaxpp::training
