// Options of the parallel layout: world = pp * dp * tp, ep divides dp * tp.
#pragma once

#include <cstdint>

namespace moxie {

struct ParallelOptions {
  int64_t dp = 1;
  int64_t tp = 1;
  int64_t ep = 1;
  int64_t pp = 1;  // pipeline parallelism is not implemented: must be 1
  // ZeRO-1: optimizer state (moments, fp32 masters) sharded over the
  // data-parallel ranks; each updates its share and sends it to the others.
  bool zero1 = false;
  // Start each gradient bucket's all-reduce during the backward pass of a
  // step's last micro-batch, as soon as its gradients are complete. Off by
  // default: on CPU, MPI's non-blocking all-reduce only progresses inside
  // other MPI calls, and measured 2.6% slower (tests/bench/RESULTS.md).
  bool overlap_grad_sync = false;
  // A rank that makes no progress for this long (stuck in a collective,
  // waiting for a stopped or deadlocked rank) ends the job, naming the ranks
  // whose heartbeat went stale (parallel/watchdog.h). 0 turns it off.
  double collective_timeout_s = 600;
};

}  // namespace moxie
