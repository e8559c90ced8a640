// The `flaxpp` command: `flaxpp <command> ...`. Each command registers itself in cli/commands.hpp
// and parses its own arguments with CLI11. An exception that reaches main is printed with the
// command and its cause. The commands' errors name the argument at fault (cli::ArgError, the
// file a SerializationError names, a flag that does not match a file); any other error, such as
// running out of memory, is followed by the command line.
#include <iostream>
#include <new>
#include <string>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "core/allocator.hpp"

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
  std::string command_line = "flaxpp";
  for (int i = 1; i < argc; ++i) command_line += std::string(" ") + argv[i];
  const std::string prefix = "flaxpp " + std::string(argv[1]) + ": error: ";
  try {
    return it->second.run(argc - 1, argv + 1);
  } catch (const std::invalid_argument& e) {  // ArgError, ops, modules, files: each names its cause
    std::cerr << prefix << e.what() << "\n";
  } catch (const flaxpp::AllocationError& e) {
    std::cerr << prefix << e.what() << "\n  in: " << command_line << "\n";
  } catch (const std::bad_alloc&) {
    std::cerr << prefix << "out of memory (std::bad_alloc)\n  in: " << command_line << "\n";
  } catch (const std::exception& e) {
    std::cerr << prefix << e.what() << "\n  in: " << command_line << "\n";
  } catch (...) {
    std::cerr << prefix << "unknown exception\n  in: " << command_line << "\n";
  }
  return 1;
}
