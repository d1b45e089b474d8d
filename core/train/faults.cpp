// Stop signals and injected faults.
#include "core/train/faults.h"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>

#include "core/common/env.h"

namespace moxie {
namespace {
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }
}  // namespace

std::set<int64_t> injected_nonfinite_steps(int rank) {
  std::set<int64_t> steps;
  const char* env = std::getenv(env::kFaultNonfinite);
  if (env == nullptr || *env == '\0') return steps;
  std::string spec = env;
  const auto at = spec.find('@');
  try {
    if (at != std::string::npos) {
      if (std::stoi(spec.substr(at + 1)) != rank) return steps;
      spec.resize(at);
    }
    std::stringstream in(spec);
    for (std::string item; std::getline(in, item, ',');) steps.insert(std::stoll(item));
  } catch (const std::exception&) {
    throw std::runtime_error(std::string("MOXIE_FAULT_NONFINITE='") + env +
                             "' is not STEP[,STEP...][@RANK]; unset it outside of tests");
  }
  return steps;
}

void stop_if_injected(int rank, int64_t step_done) {
  const char* env = std::getenv(env::kFaultStop);
  if (env == nullptr || *env == '\0') return;
  long long step = 0;
  int at_rank = 0;
  char tail = 0;
  if (std::sscanf(env, "%lld@%d%c", &step, &at_rank, &tail) != 2) {
    throw std::runtime_error(std::string("MOXIE_FAULT_STOP='") + env +
                             "' is not STEP@RANK; unset it outside of tests");
  }
  if (at_rank == rank && step == step_done) std::raise(SIGSTOP);
}

void catch_stop_signals() {
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
}

int stop_signal() { return g_stop_signal.load(); }

}  // namespace moxie
