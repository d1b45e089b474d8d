// Command-line helpers shared by the `moxie` subcommand families.
#include "launch/cli_args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>

#include "core/common/file_io.h"

namespace moxie::cli {

int64_t integer_arg(const std::string& flag, const std::string& value, int64_t lo, int64_t hi) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
    throw UsageError(flag + " " + excerpt(value, 40) + ": expected a whole number from " +
                     std::to_string(lo) + " to " + std::to_string(hi));
  }
  return static_cast<int64_t>(v);
}

int64_t rank_arg(const std::string& flag, const std::string& value) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno == ERANGE || v < 0) {
    throw UsageError(flag + " " + excerpt(value, 40) + ": expected a rank, 0 or more (at most " +
                     std::to_string(std::numeric_limits<long long>::max()) + ")");
  }
  return static_cast<int64_t>(v);
}

double number_arg(const std::string& flag, const std::string& value) {
  char* end = nullptr;
  const double v = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0' || !(v > 0) || !std::isfinite(v)) {
    throw UsageError(flag + " " + value + ": expected a positive number");
  }
  return v;
}

double real_arg(const std::string& flag, const std::string& value, double lo, bool open_lo,
                double hi, const std::string& expected) {
  char* end = nullptr;
  const double v = std::strtod(value.c_str(), &end);
  if (value.empty() || *end || !std::isfinite(v) || v < lo || (open_lo && v == lo) || v > hi) {
    throw UsageError(flag + " " + value + ": expected " + expected);
  }
  return v;
}

Invocation parse_args(const std::string& command, int argc, char** argv) {
  Invocation inv;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--set") {
      if (i + 1 >= argc) throw UsageError("--set needs a value: --set key.path=value");
      inv.overrides.push_back(argv[++i]);
    } else if (arg.rfind("--set=", 0) == 0) {
      inv.overrides.push_back(arg.substr(6));
    } else if (command == "train" && arg == "--resume") {
      // --resume [latest|PATH]: the value is optional.
      auto is_config = [](const std::string& a) {
        const auto ext = std::filesystem::path(a).extension().string();
        return ext == ".yaml" || ext == ".yml";
      };
      const bool has_value = i + 1 < argc && argv[i + 1][0] != '-' && !is_config(argv[i + 1]);
      inv.overrides.push_back("train.resume=" + std::string(has_value ? argv[++i] : "latest"));
    } else if (command == "plan" &&
               (arg == "--world" || arg == "--device-memory" || arg == "--param-bytes")) {
      if (i + 1 >= argc) throw UsageError(arg + " needs a value");
      if (arg == "--world") {
        inv.plan.world = integer_arg(arg, argv[++i], 1, int64_t{1} << 24);
        inv.world_given = true;
        continue;
      }
      const double v = number_arg(arg, argv[++i]);
      if (arg == "--device-memory") {
        inv.plan.device_bytes = v * 1e9;
      } else {
        if (v != 2 && v != 4) throw UsageError("--param-bytes takes 2 (bf16) or 4 (fp32)");
        inv.plan.param_bytes = static_cast<int64_t>(v);
      }
    } else if (command == "plan" && (arg == "--rank" || arg == "--materialize-rank")) {
      if (i + 1 >= argc) throw UsageError(arg + " needs a rank");
      inv.plan.rank = rank_arg(arg, argv[++i]);
      inv.materialize = inv.materialize || arg == "--materialize-rank";
    } else if (command == "plan" && arg == "--materialize-blocks") {
      if (i + 1 >= argc) throw UsageError(arg + " needs a number of blocks");
      inv.plan.materialize_blocks = rank_arg(arg, argv[++i]);
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

}  // namespace moxie::cli
