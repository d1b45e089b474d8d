// parallelize: the parallelisms applied to a model, as free functions in one
// documented order. Each apply_* reads the validated layout (ParallelDims,
// carried by the process groups) and fills in the part of ModelParallel its
// axis owns; the model is then built from that, so adding a parallelism is
// one new apply_* function and one line in parallelize().
//
// Order (world = pp x dp x tp; ep folds over dp x tp):
//   1. apply_pp  (not yet: parallel.pp must be 1)   splits the blocks into stages
//   2. apply_tp                                      heads, FFN widths, vocabulary; sequence
//   between blocks
//   3. apply_cp  (not yet)                           sequences split over ranks, key/value ring
//   4. apply_ep                                      experts over the EP group; batch-wide routing
//   statistics
// Data parallelism needs no change to the model: gradient sync and ZeRO-1
// (parallel/grad_sync.h, parallel/zero.h) act on its parameters.
#pragma once

#include "parallel/communicator.h"
#include "parallel/parallel_dims.h"
#include "parallel/process_groups.h"
#include "parallel/tensor_parallel.h"

namespace moxie {

// The groups a model is built with, one per axis it is split over. The
// model owns this (it is not an experts' struct): attention and dense FFNs
// read `tp`, MoE layers `ep` and `batch`. Default: one process. The
// communicators belong to the ProcessGroups and must outlive the model.
struct ModelParallel {
  // Tensor parallelism: attention heads, FFN widths and the vocabulary split
  // over this group, the sequence split over it between blocks.
  TensorParallel tp;
  // Expert parallelism: each rank of this group holds num_experts / size of
  // the routed experts; tokens reach them by all-to-all. nullptr: all local.
  Communicator* ep = nullptr;
  // Every rank whose tokens form one global batch (dp x tp): the routers'
  // balance statistics count over it. nullptr: this rank alone.
  Communicator* batch = nullptr;
};

void apply_tp(const ParallelDims& dims, const ProcessGroups& groups, ModelParallel& parallel);
void apply_ep(const ParallelDims& dims, const ProcessGroups& groups, ModelParallel& parallel);

// Every parallelism of groups.dims, applied in the order above.
ModelParallel parallelize(const ProcessGroups& groups);

}  // namespace moxie
