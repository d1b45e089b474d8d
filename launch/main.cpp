// The `moxie` command: parses the subcommand line and hands off to core/.
//   moxie train CONFIG [--set key.path=value]...
//   moxie config CONFIG [--set key.path=value]...   print the resolved config
// Exit codes: 0 success, 1 runtime failure, 2 bad command line or config.
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/trainer.h"

namespace {

const char* kUsage =
    "usage: moxie <command> [options]\n"
    "\n"
    "commands:\n"
    "  train CONFIG [--set key.path=value]...   train a model from a YAML config\n"
    "  config CONFIG [--set key.path=value]...  validate and print the resolved config\n"
    "  help                                     this text\n"
    "\n"
    "example:\n"
    "  moxie train configs/tiny.yaml --set train.steps=100 --set optim.lr=1e-3\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Invocation {
  std::string config_path;
  std::vector<std::string> overrides;
};

Invocation parse_args(const std::string& command, int argc, char** argv) {
  Invocation inv;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--set") {
      if (i + 1 >= argc) throw UsageError("--set needs a value: --set key.path=value");
      inv.overrides.push_back(argv[++i]);
    } else if (arg.rfind("--set=", 0) == 0) {
      inv.overrides.push_back(arg.substr(6));
    } else if (!arg.empty() && arg[0] == '-') {
      throw UsageError("unknown option '" + arg + "' for 'moxie " + command + "'");
    } else if (inv.config_path.empty()) {
      inv.config_path = arg;
    } else {
      throw UsageError("unexpected argument '" + arg + "': 'moxie " + command +
                       "' takes one CONFIG file");
    }
  }
  if (inv.config_path.empty()) {
    throw UsageError("'moxie " + command + "' needs a CONFIG file, e.g. configs/tiny.yaml");
  }
  return inv;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help") ||
      !std::strcmp(argv[1], "-h")) {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  try {
    if (command == "train" || command == "config") {
      const auto inv = parse_args(command, argc, argv);
      const auto config = moxie::load_config(inv.config_path, inv.overrides);
      if (command == "config") {
        std::cout << moxie::to_yaml(config);
        return 0;
      }
      moxie::Trainer trainer(config, std::cout);
      trainer.run();
      return 0;
    }
    throw UsageError("unknown command '" + command + "'; run 'moxie help'");
  } catch (const UsageError& e) {
    std::cerr << "moxie: " << e.what() << "\n";
    return 2;
  } catch (const moxie::ConfigError& e) {
    std::cerr << "moxie: config error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "moxie: error: " << e.what() << "\n";
    return 1;
  }
}
