// Every MOXIE_* environment switch, with its meaning: the one list. Each is
// read where it acts (the comment names the place); none is needed for a
// normal run, and a config key is always preferred over a new switch.
#pragma once

namespace moxie::env {

// "0": CUDA tensors take the composed ATen ops instead of moxie's fused
// kernels (benchmarks, bisecting a numerical difference). Read once.
// core/common/host.h fused_kernels_enabled().
inline constexpr const char* kFusedKernels = "MOXIE_FUSED_KERNELS";

// Set: keep glibc's malloc defaults instead of keeping freed memory for
// reuse. core/common/allocator.cpp.
inline constexpr const char* kMallocDefault = "MOXIE_MALLOC_DEFAULT";

// "STEP[,STEP...][@RANK]": those steps' loss becomes NaN (on RANK only, or
// on every rank), for tests of the non-finite-step path. core/train/faults.cpp.
inline constexpr const char* kFaultNonfinite = "MOXIE_FAULT_NONFINITE";

// "STEP@RANK": after finishing STEP, RANK stops itself with SIGSTOP, as a
// hung or swapped-out node would, for tests of the watchdog.
// core/train/faults.cpp.
inline constexpr const char* kFaultStop = "MOXIE_FAULT_STOP";

// The mpirun that `moxie launch` runs (default: mpirun on PATH).
// launch/launch_command.cpp.
inline constexpr const char* kMpirun = "MOXIE_MPIRUN";

// Path of the SentencePiece plugin (default: the one built beside moxie).
// data/tokenizer.cpp.
inline constexpr const char* kSentencePiecePlugin = "MOXIE_SENTENCEPIECE_PLUGIN";

}  // namespace moxie::env
