// libFuzzer target: training::restore_checkpoint on a file the fuzzer writes, against a
// TrainState (MLP params, clip + adam opt_state, step, rng). Also loads the same bytes as the
// state dict with from_bytes(target, ...), without the file system.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>

#include "fuzz_common.hpp"

using namespace flaxpp;
namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const training::TrainState target = fuzz::train_state_target();
  static const Tree target_dict = target.state_dict();
  static const fs::path dir = [] {
    fs::path d =
        fs::temp_directory_path() / ("flaxpp_fuzz_checkpoint_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
  }();

  {
    std::ofstream f(training::checkpoint_path(dir, 5), std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    training::TrainState s = training::restore_checkpoint(dir, target);
    fuzz::check_like(target.params, s.params);
    fuzz::check_like(target.opt_state, s.opt_state);
    // The restored state must be usable: one optimizer step with zero gradients.
    s.apply_gradients(tree_map(
        [](const Array& p) {
          return Array::from_bytes(p.shape(), p.dtype(), std::vector<uint8_t>(p.nbytes()).data());
        },
        s.params));
  } catch (const SerializationError&) {
  }
  try {
    fuzz::check_like(target_dict, from_bytes(target_dict, std::span<const uint8_t>(data, size)));
  } catch (const SerializationError&) {
  }
  return 0;
}
