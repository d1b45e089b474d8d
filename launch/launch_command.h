// `moxie launch -n N CONFIG [--set ...]`: the mpirun line for N local ranks,
// then exec. One thread per rank unless the machine has cores to spare.
#pragma once

#include <string>
#include <vector>

namespace moxie {

struct LaunchPlan {
  std::vector<std::string> argv;  // the full mpirun command line
};

// argv as given to `moxie launch ...` (argv[0] the moxie binary). Throws
// std::invalid_argument with the fix for a bad command line.
LaunchPlan plan_launch(const std::vector<std::string>& args, const std::string& self,
                       unsigned cores, bool as_root);

// Prints the plan and execs it; returns a non-zero code only if exec failed.
int launch(int argc, char** argv);

}  // namespace moxie
