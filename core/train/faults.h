// What can stop or poison a run from outside: SIGTERM / SIGINT (save, then
// stop) and, for tests of the non-finite-step path, injected NaN losses.
#pragma once

#include <cstdint>
#include <set>

namespace moxie {

// MOXIE_FAULT_NONFINITE="STEP[,STEP...][@RANK]" (core/common/env.h): the
// 1-based steps whose loss this rank makes NaN, as a bad batch or an
// overflow would. Empty when unset or meant for another rank; throws naming
// the variable when it does not parse.
std::set<int64_t> injected_nonfinite_steps(int rank);

// MOXIE_FAULT_STOP="STEP@RANK" (core/common/env.h): on RANK, after STEP, the
// process stops itself with SIGSTOP. Throws naming the variable when it does
// not parse.
void stop_if_injected(int rank, int64_t step_done);

// From now on SIGTERM and SIGINT only set a flag (see stop_signal()): the run
// saves at the end of the step, then stops.
void catch_stop_signals();
// The signal caught since catch_stop_signals(), or 0.
int stop_signal();

}  // namespace moxie
