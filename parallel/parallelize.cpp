// The parallelisms in their documented order (see parallelize.h).
#include "parallel/parallelize.h"

namespace moxie {

void apply_tp(const ParallelDims& dims, const ProcessGroups& groups, ModelParallel& parallel) {
  if (dims.tp() > 1) parallel.tp.group = groups.tp.get();
}

void apply_ep(const ParallelDims& dims, const ProcessGroups& groups, ModelParallel& parallel) {
  if (dims.ep() > 1) parallel.ep = groups.ep.get();
  // The balance loss counts experts over the whole global batch: every DP
  // replica, and under sequence parallelism every TP rank's slice.
  parallel.batch = groups.dp_tp.get();
}

ModelParallel parallelize(const ProcessGroups& groups) {
  const ParallelDims& dims = groups.dims;
  ModelParallel parallel;
  // apply_pp goes first, once pipeline stages exist.
  apply_tp(dims, groups, parallel);
  // apply_cp goes here, once context parallelism exists.
  apply_ep(dims, groups, parallel);
  return parallel;
}

}  // namespace moxie
