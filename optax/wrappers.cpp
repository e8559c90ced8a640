#include "optax/wrappers.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <tuple>

#include "core/ops.hpp"
#include "optax/transform.hpp"

namespace flaxpp::optax {

using detail::count_array;
using detail::count_of;

// ---- masked --------------------------------------------------------------------------------

namespace {

std::string join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "/" + key;
}

// The tree with every leaf where mask(path) is false replaced by an empty dict (MaskedNode).
Tree mask_tree(const Tree& t, const Mask& mask, const std::string& prefix = "") {
  if (t.is_leaf()) return mask(prefix) ? t : Tree();
  std::vector<Tree> values;
  for (const auto& [key, child] : t.items())
    values.push_back(mask_tree(child, mask, join(prefix, key)));
  return Tree::rebuild(t, std::move(values));
}

// `updated` where mask(path) holds, `original` elsewhere (the structure of `original`).
Tree unmask(const Tree& original, const Tree& updated, const Mask& mask,
            const std::string& prefix = "") {
  if (original.is_leaf()) return mask(prefix) ? updated : original;
  std::vector<Tree> values;
  for (const auto& [key, child] : original.items())
    values.push_back(unmask(child, updated.is_dict() && updated.find(key) ? updated[key] : Tree(),
                            mask, join(prefix, key)));
  return Tree::rebuild(original, std::move(values));
}

}  // namespace

GradientTransformation masked(GradientTransformation inner, Mask mask) {
  if (!mask) throw std::invalid_argument("masked: the mask function is empty");
  return {[inner, mask](const Tree& params) {
            return Tree{{"inner_state", inner.init(mask_tree(params, mask))}};
          },
          [inner, mask](const Tree& u, const Tree& state, const Tree* params) {
            Tree mu = mask_tree(u, mask);
            std::optional<Tree> mp;
            if (params) mp = mask_tree(*params, mask);
            auto [new_u, new_inner] =
                inner.update_fn(mu, state["inner_state"], mp ? &*mp : nullptr);
            return std::make_pair(unmask(u, new_u, mask), Tree{{"inner_state", new_inner}});
          }};
}

GradientTransformation masked(GradientTransformation inner, Tree mask_tree_) {
  Mask fn = [m = std::move(mask_tree_)](const std::string& path) {
    // The deepest mask entry on the path: the leaf itself or a prefix (a subtree's flag).
    const Tree* node = &m;
    size_t pos = 0;
    while (node->is_dict()) {
      if (pos >= path.size() + 1)
        throw std::invalid_argument("masked: the mask has a dict where the params have the leaf " +
                                    path);
      size_t end = path.find('/', pos);
      std::string key = path.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      const Tree* next = node->find(key);
      if (!next)
        throw std::invalid_argument("masked: the mask has no entry for " + path + " (no key '" +
                                    key + "' at " + (pos ? path.substr(0, pos - 1) : "the root") +
                                    ")");
      node = next;
      pos = end == std::string::npos ? path.size() + 1 : end + 1;
    }
    const Array& flag = node->array();
    if (flag.size() != 1)
      throw std::invalid_argument("masked: the mask entry for " + path + " has shape " +
                                  to_string(flag.shape()) + "; expected a scalar bool");
    return flag.item<bool>();
  };
  return masked(std::move(inner), std::move(fn));
}

// ---- apply_if_finite -----------------------------------------------------------------------

namespace {
bool all_finite(const Tree& t) {
  for (const Array& x : tree_leaves(t)) {
    if (!x.is_float()) continue;
    for (float v : x.to_float())
      if (!std::isfinite(v)) return false;
  }
  return true;
}
}  // namespace

GradientTransformation apply_if_finite(GradientTransformation inner, int max_consecutive_errors) {
  return {[inner](const Tree& params) {
            return Tree{{"notfinite_count", count_array(0)},
                        {"last_finite", Array(true)},
                        {"total_notfinite", count_array(0)},
                        {"inner_state", inner.init(params)}};
          },
          [inner, max_consecutive_errors](const Tree& u, const Tree& state, const Tree* params) {
            bool finite = all_finite(u);
            int64_t notfinite = finite ? 0 : state["notfinite_count"].array().item<int64_t>() + 1;
            int64_t total = state["total_notfinite"].array().item<int64_t>() + (finite ? 0 : 1);
            Tree out, inner_state = state["inner_state"];
            if (finite || notfinite > max_consecutive_errors) {
              std::tie(out, inner_state) = inner.update_fn(u, inner_state, params);
            } else {
              out = detail::zeros_like_tree(u);
            }
            return std::make_pair(out, Tree{{"notfinite_count", count_array(notfinite)},
                                            {"last_finite", Array(finite)},
                                            {"total_notfinite", count_array(total)},
                                            {"inner_state", inner_state}});
          }};
}

// ---- inject_hyperparams --------------------------------------------------------------------

GradientTransformation inject_hyperparams(
    std::function<GradientTransformation(const Hyperparams&)> factory,
    std::vector<std::pair<std::string, LearningRate>> hyperparams) {
  std::vector<std::string> constants, scheduled;
  std::map<std::string, Schedule> schedules;
  for (const auto& [name, v] : hyperparams) {
    if (schedules.count(name) ||
        std::find(constants.begin(), constants.end(), name) != constants.end())
      throw std::invalid_argument("inject_hyperparams: hyper-parameter '" + name + "' given twice");
    if (v.schedule) {
      scheduled.push_back(name);
      schedules[name] = v.schedule;
    } else {
      constants.push_back(name);
    }
  }
  std::map<std::string, float> initial;
  for (const auto& [name, v] : hyperparams) initial[name] = static_cast<float>(v.value);

  // The hyperparams dict: constants from `values`, schedules at their counts.
  auto evaluate = [=](const std::function<float(const std::string&)>& constant_value,
                      const std::function<int64_t(const std::string&)>& schedule_count) {
    std::vector<Tree::Item> items;
    Hyperparams h;
    for (const auto& name : constants) items.emplace_back(name, Array(constant_value(name)));
    for (const auto& name : scheduled)
      items.emplace_back(name, Array(static_cast<float>(schedules.at(name)(schedule_count(name)))));
    for (const auto& [name, v] : items) h[name] = v.array().item<double>();
    return std::make_pair(Tree::dict(std::move(items)), h);
  };
  auto schedule_states = [scheduled](const std::function<int64_t(const std::string&)>& count) {
    std::vector<Tree::Item> items;
    for (const auto& name : scheduled)
      items.emplace_back(name, Tree{{"count", count_array(count(name))}});
    return Tree::dict(std::move(items));
  };
  return {
      [=](const Tree& params) {
        auto [hp, h] = evaluate([&](const std::string& n) { return initial.at(n); },
                                [](const std::string&) { return int64_t{0}; });
        return Tree{{"count", count_array(0)},
                    {"hyperparams", hp},
                    {"hyperparams_states", schedule_states([](const std::string&) { return 0; })},
                    {"inner_state", factory(h).init(params)}};
      },
      [=](const Tree& u, const Tree& state, const Tree* params) {
        const Tree& hs = state["hyperparams_states"];
        auto sched_count = [&](const std::string& n) { return count_of(hs[n]); };
        auto [hp, h] = evaluate(
            [&](const std::string& n) { return state["hyperparams"][n].array().item<float>(); },
            sched_count);
        auto [out, inner_state] = factory(h).update_fn(u, state["inner_state"], params);
        return std::make_pair(
            out, Tree{{"count", count_array(count_of(state) + 1)},
                      {"hyperparams", hp},
                      {"hyperparams_states",
                       schedule_states([&](const std::string& n) { return sched_count(n) + 1; })},
                      {"inner_state", inner_state}});
      }};
}

Tree set_hyperparam(const Tree& inject_state, const std::string& name, double value) {
  if (!inject_state.contains("hyperparams/" + name))
    throw std::invalid_argument("set_hyperparam: the state has no hyper-parameter '" + name + "'");
  return inject_state.set("hyperparams/" + name, Tree(Array(static_cast<float>(value))));
}

double get_hyperparam(const Tree& inject_state, const std::string& name) {
  const Tree* v = inject_state.find("hyperparams/" + name);
  if (!v || !v->is_leaf())
    throw std::invalid_argument("get_hyperparam: the state has no hyper-parameter '" + name + "'");
  return v->array().item<double>();
}

// ---- MultiSteps ----------------------------------------------------------------------------

MultiSteps::MultiSteps(GradientTransformation opt, int64_t every_k_steps, bool use_grad_mean)
    : opt_(std::move(opt)),
      every_k_([every_k_steps](int64_t) { return every_k_steps; }),
      use_grad_mean_(use_grad_mean) {
  if (every_k_steps < 1)
    throw std::invalid_argument("MultiSteps: every_k_steps must be >= 1, got " +
                                std::to_string(every_k_steps));
}

MultiSteps::MultiSteps(GradientTransformation opt, std::function<int64_t(int64_t)> every_k_schedule,
                       bool use_grad_mean)
    : opt_(std::move(opt)), every_k_(std::move(every_k_schedule)), use_grad_mean_(use_grad_mean) {}

GradientTransformation MultiSteps::gradient_transformation() const {
  auto opt = opt_;
  auto every_k = every_k_;
  bool mean = use_grad_mean_;
  return {
      [opt](const Tree& params) {
        return Tree{{"mini_step", count_array(0)},
                    {"gradient_step", count_array(0)},
                    {"inner_opt_state", opt.init(params)},
                    {"acc_grads", detail::zeros_like_tree(params)},
                    {"skip_state", Tree()}};
      },
      [opt, every_k, mean](const Tree& u, const Tree& state, const Tree* params) {
        int64_t mini = state["mini_step"].array().item<int64_t>();
        int64_t gstep = state["gradient_step"].array().item<int64_t>();
        int64_t k = every_k(gstep);
        if (k < 1)
          throw std::invalid_argument("MultiSteps: every_k_schedule(" + std::to_string(gstep) +
                                      ") = " + std::to_string(k) + ", must be >= 1");
        Array n1(static_cast<float>(mini + 1));
        Tree acc = mean ? tree_map([&](const Array& g, const Array& a) { return a + (g - a) / n1; },
                                   u, state["acc_grads"])
                        : tree_map([](const Array& g, const Array& a) { return g + a; }, u,
                                   state["acc_grads"]);
        bool emit = mini == k - 1;
        Tree out, inner_state = state["inner_opt_state"];
        if (emit) {
          std::tie(out, inner_state) = opt.update_fn(acc, inner_state, params);
          acc = tree_map([](const Array& a) { return a * 0.f; }, acc);  // (1 - emit) * acc
        } else {
          // optax computes the inner update and multiplies it by 0: zeros, for finite values.
          out = detail::zeros_like_tree(u);
        }
        return std::make_pair(out, Tree{{"mini_step", count_array((mini + 1) % k)},
                                        {"gradient_step", count_array(emit ? gstep + 1 : gstep)},
                                        {"inner_opt_state", inner_state},
                                        {"acc_grads", acc},
                                        {"skip_state", Tree()}});
      }};
}

bool MultiSteps::has_updated(const Tree& state) {
  return state["mini_step"].array().item<int64_t>() == 0 &&
         state["gradient_step"].array().item<int64_t>() > 0;
}

}  // namespace flaxpp::optax
