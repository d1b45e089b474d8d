// `moxie train CONFIG [--set ...]... [--resume [latest|PATH]]` and
// `moxie config CONFIG [--set ...]...`: a training run from a YAML config, or
// that config validated and printed. (`moxie launch`, which runs `train` on
// N local ranks, is launch/launch_command.h.)
#pragma once

#include <string>

namespace moxie::cli {

// This process's place in the job: under an MPI launcher MPI is already up
// when the command runs; alone, rank 0 of 1.
struct JobRank {
  bool under_mpi = false;
  int rank = 0, world_size = 1;
};

// argv as given to `moxie COMMAND ...`, command train or config. Returns the
// exit code; throws UsageError for a bad command line, ConfigError or
// LayoutError for a bad config or layout, anything else for a failed run.
int train_command(const std::string& command, int argc, char** argv, const JobRank& job);

}  // namespace moxie::cli
