#include "training/train_state.hpp"

#include <algorithm>
#include <charconv>
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
  if (ema_decay)
    next.ema_params = optax::incremental_update(next.params, ema_params, 1 - *ema_decay);
  next.step = step + 1;
  return next;
}

random::Key TrainState::step_rng() const {
  return random::fold_in(rng, static_cast<uint32_t>(step));
}

Tree TrainState::state_dict() const {
  std::vector<Tree::Item> items{
      {"step", Array(static_cast<int32_t>(step))}, {"params", params}, {"opt_state", opt_state}};
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

std::filesystem::path checkpoint_path(const std::filesystem::path& dir, int64_t step,
                                      const std::string& prefix) {
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
    if (name.size() < prefix.size() + ext.size() ||
        name.compare(name.size() - ext.size(), ext.size(), ext) != 0)
      continue;
    std::string rest = name.substr(prefix.size(), name.size() - prefix.size() - ext.size());
    if (rest.empty() || !std::all_of(rest.begin(), rest.end(), ::isdigit))
      continue;  // skips temp files
    int64_t step = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), step);
    if (ec != std::errc() || end != rest.data() + rest.size())
      throw SerializationError("checkpoint_steps: " + e.path().string() + ": step " + rest +
                               " does not fit int64; rename or remove this file");
    steps.push_back(step);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

std::filesystem::path save_checkpoint(const std::filesystem::path& dir, const TrainState& state,
                                      int64_t step, int keep, const std::string& prefix) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw SerializationError("save_checkpoint: cannot create directory " + dir.string() + ": " +
                             ec.message());
  auto path = checkpoint_path(dir, step, prefix);
  save(path, state.state_dict(), SaveOptions{.checksum = true});
  if (keep > 0) {
    auto steps = checkpoint_steps(dir, prefix);
    for (size_t i = 0; i + static_cast<size_t>(keep) < steps.size(); ++i)
      if (steps[i] != step) {
        auto old = checkpoint_path(dir, steps[i], prefix);
        std::filesystem::remove(old, ec);
        std::filesystem::remove(meta_path(old), ec);
      }
  }
  return path;
}

TrainState restore_checkpoint(const std::filesystem::path& dir, const TrainState& target,
                              std::optional<int64_t> step, const std::string& prefix) {
  if (!step) {
    auto steps = checkpoint_steps(dir, prefix);
    if (steps.empty())
      throw SerializationError("restore_checkpoint: no " + prefix + "<step>.msgpack file in " +
                               dir.string());
    step = steps.back();
  }
  auto path = checkpoint_path(dir, *step, prefix);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    std::string have;
    for (int64_t s : checkpoint_steps(dir, prefix))
      have += (have.empty() ? "" : ", ") + std::to_string(s);
    throw SerializationError("restore_checkpoint: no " + path.string() + " (steps in " +
                             dir.string() + ": " + (have.empty() ? "none" : have) + ")");
  }
  Tree sd = load(path, target.state_dict());
  return target.with_state_dict(sd);
}

TrainState restore_newest_valid(const std::filesystem::path& dir, const TrainState& target,
                                RestoreReport& report, const std::string& prefix) {
  report = {};
  auto steps = checkpoint_steps(dir, prefix);
  if (steps.empty())
    throw SerializationError("restore_checkpoint: no " + prefix + "<step>.msgpack file in " +
                             dir.string());
  std::string why_none;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    auto path = checkpoint_path(dir, *it, prefix);
    try {
      TrainState s = target.with_state_dict(load(path, target.state_dict()));
      report.restored = path;
      return s;
    } catch (const SerializationError& e) {
      report.skipped.emplace_back(path, e.what());
      why_none += std::string("\n  ") + e.what();
    }
  }
  throw SerializationError("restore_checkpoint: no checkpoint in " + dir.string() +
                           " loads:" + why_none);
}

std::vector<std::filesystem::path> remove_stale_temp_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> removed;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return removed;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    // save()'s temporary names: "." + file name + ".tmp-" + pid + "-" + 8 hex digits.
    std::string name = e.path().filename().string();
    size_t at = name.rfind(".tmp-");
    if (name.size() < 2 || name[0] != '.' || at == std::string::npos || at < 2) continue;
    std::string tail = name.substr(at + 5);
    size_t dash = tail.find('-');
    if (dash == std::string::npos || dash == 0 || tail.size() - dash - 1 != 8) continue;
    if (!std::all_of(tail.begin(), tail.begin() + static_cast<long>(dash), ::isdigit) ||
        !std::all_of(tail.begin() + static_cast<long>(dash) + 1, tail.end(), ::isxdigit))
      continue;
    if (std::filesystem::remove(e.path(), ec)) removed.push_back(e.path());
  }
  return removed;
}

}  // namespace flaxpp::training
