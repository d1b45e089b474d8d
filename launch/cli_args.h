// Command-line helpers shared by the `moxie` subcommand families: the error
// for a bad command line (exit code 2), checked number arguments, and the
// CONFIG [--set key.path=value]... line that train, config and plan take.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/plan/plan.h"

namespace moxie::cli {

// A bad command line. The same on every rank, so main prints it once and
// exits with 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What `moxie train|config|plan` was given.
struct Invocation {
  std::string config_path;
  std::vector<std::string> overrides;
  moxie::PlanOptions plan;  // moxie plan only
  bool world_given = false;
  bool materialize = false;  // moxie plan --materialize-rank R
};

// argv[2..argc) of `moxie COMMAND`: one CONFIG, --set pairs, and the flags
// only `train` (--resume) and `plan` take. UsageError for anything else.
Invocation parse_args(const std::string& command, int argc, char** argv);

// An integer, 0 or more (a rank, a seed, a token id), else a UsageError
// naming the flag.
int64_t rank_arg(const std::string& flag, const std::string& value);
// A whole number in [lo, hi], else a UsageError naming the flag and the range
// ("--samples-per-shard abc", "--steps 99999999999999999999", "2.5").
int64_t integer_arg(const std::string& flag, const std::string& value, int64_t lo, int64_t hi);
// A finite number above 0, else a UsageError naming the flag.
double number_arg(const std::string& flag, const std::string& value);
// A real number in [lo, hi] (lo excluded with open_lo), else a UsageError
// saying `expected`.
double real_arg(const std::string& flag, const std::string& value, double lo, bool open_lo,
                double hi, const std::string& expected);

}  // namespace moxie::cli
