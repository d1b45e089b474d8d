// moxie launch: build the mpirun line and exec it.
#include "launch/launch_command.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <thread>

#include "core/common/env.h"

namespace moxie {

LaunchPlan plan_launch(const std::vector<std::string>& args, const std::string& self,
                       unsigned cores, bool as_root) {
  int ranks = 0;
  std::vector<std::string> rest;  // CONFIG and --set pairs, passed to `moxie train`
  for (size_t i = 2; i < args.size(); ++i) {
    if (args[i] == "-n" || args[i] == "--ranks") {
      if (i + 1 >= args.size())
        throw std::invalid_argument("-n needs a number of ranks, e.g. -n 4");
      char* end = nullptr;
      const long n = std::strtol(args[i + 1].c_str(), &end, 10);
      if (*end != '\0' || n < 1) {
        throw std::invalid_argument("-n " + args[i + 1] +
                                    ": the number of ranks must be a positive integer");
      }
      ranks = static_cast<int>(n);
      ++i;
    } else {
      rest.push_back(args[i]);
    }
  }
  if (ranks == 0)
    throw std::invalid_argument(
        "'moxie launch' needs -n N, e.g. moxie launch -n 4 configs/tiny.yaml");
  if (rest.empty()) throw std::invalid_argument("'moxie launch' needs a CONFIG file after -n N");

  const char* mpirun = std::getenv(env::kMpirun);
  LaunchPlan plan;
  plan.argv = {mpirun ? mpirun : "mpirun", "-n", std::to_string(ranks)};
  if (as_root) plan.argv.push_back("--allow-run-as-root");
  const unsigned threads = std::max(1u, cores / static_cast<unsigned>(ranks));
  if (static_cast<unsigned>(ranks) > cores) {
    // More ranks than cores: share them, and never pin two ranks to one core.
    plan.argv.insert(plan.argv.end(), {"--oversubscribe", "--bind-to", "none"});
  } else {
    plan.argv.insert(plan.argv.end(),
                     {"--map-by", "slot:PE=" + std::to_string(threads), "--bind-to", "core"});
  }
  plan.argv.insert(plan.argv.end(),
                   {"-x", "OMP_NUM_THREADS=" + std::to_string(threads), self, "train"});
  plan.argv.insert(plan.argv.end(), rest.begin(), rest.end());
  return plan;
}

int launch(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  const std::string exe = n > 0 ? std::string(self, n) : args[0];
  const auto plan =
      plan_launch(args, exe, std::max(1u, std::thread::hardware_concurrency()), ::geteuid() == 0);
  std::cout << "moxie launch:";
  for (const auto& a : plan.argv) std::cout << ' ' << a;
  std::cout << std::endl;
  std::vector<char*> cargv;
  for (const auto& a : plan.argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  ::execvp(cargv[0], cargv.data());
  throw std::runtime_error("cannot run " + plan.argv[0] + ": " + std::strerror(errno) +
                           " (install Open MPI, or set MOXIE_MPIRUN to your mpirun)");
}

}  // namespace moxie
