// Registry of `flaxpp` subcommands. A command file defines
//   static flaxpp::cli::Register reg("random", "JAX-exact random numbers as JSON", run_random);
// where run_random(argc, argv) gets argv[0] == "random".
#pragma once

#include <functional>
#include <map>
#include <string>

namespace flaxpp::cli {

struct Command {
  std::string help;
  std::function<int(int, char**)> run;
};

inline std::map<std::string, Command>& registry() {
  static std::map<std::string, Command> r;
  return r;
}

struct Register {
  Register(const std::string& name, const std::string& help, std::function<int(int, char**)> run) {
    registry()[name] = Command{help, std::move(run)};
  }
};

}  // namespace flaxpp::cli
