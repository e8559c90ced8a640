// The `flaxpp` command: `flaxpp <command> ...`. Each command registers itself in cli/commands.hpp.
#include <iostream>
#include <string>

#include "cli/commands.hpp"

int main(int argc, char** argv) {
  using namespace flaxpp::cli;
  auto& cmds = registry();
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << "usage: flaxpp <command> [args...]\n\ncommands:\n";
    for (auto& [name, c] : cmds) std::cout << "  " << name << "\t" << c.help << "\n";
    return argc < 2 ? 2 : 0;
  }
  auto it = cmds.find(argv[1]);
  if (it == cmds.end()) {
    std::cerr << "flaxpp: unknown command '" << argv[1] << "' (try flaxpp --help)\n";
    return 2;
  }
  try {
    return it->second.run(argc - 1, argv + 1);
  } catch (const std::exception& e) {
    std::cerr << "flaxpp " << argv[1] << ": error: " << e.what() << "\n";
    return 1;
  }
}
