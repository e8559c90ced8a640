// The three gMLP configs of shared/bench/torch_bench.py, with the time and memory targets set for them:
// gmlp_bench times them against PyTorch, ceiling_bench times their matrix products alone.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/gmlp.hpp"

namespace bench {

struct Config {
  std::string name;
  flaxpp::models::gMLP model;
  int64_t batch, seq;
  std::map<std::string, double> targets;  // gmlp_bench's JSON key -> upper bound
};

inline const std::vector<Config>& configs() {
  static const std::vector<Config> all = {
      {"i",
       {.num_tokens = 20000, .dim = 512, .depth = 4},
       1,
       1000,
       {{"init_ms", 200}, {"forward_ms", 260}, {"fwd_bwd_ms", 800}, {"peak_rss_fwd_bwd_mib", 400}}},
      {"ii",
       {.num_tokens = 256, .dim = 128, .depth = 4, .seq_len = 128},
       16,
       128,
       {{"train_step_ms", 60}}},
      {"iii",
       {.num_tokens = 256, .dim = 64, .depth = 2, .seq_len = 64},
       8,
       64,
       {{"train_step_ms", 3}}},
  };
  return all;
}

inline const Config* find_config(const std::string& name) {
  for (const auto& c : configs())
    if (c.name == name) return &c;
  return nullptr;
}

}  // namespace bench
