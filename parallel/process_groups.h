// Process groups built from a validated ParallelDims.
//
// Rank order (pp = 1): tensor-parallel ranks are adjacent, then data-parallel:
// rank = dp_index * tp + tp_index. Expert-parallel groups are blocks of ep
// adjacent ranks among the dp * tp non-pipeline ranks; the expert-data-parallel
// group joins the ranks that hold the same experts (same ep index).
// Groups are an object passed by reference: there is no global communicator.
#pragma once

#include <memory>

#include "parallel/communicator.h"
#include "parallel/parallel_dims.h"

namespace moxie {

class MpiCommunicator;

struct ProcessGroups {
  // The validated layout these groups were made for: the axis sizes every
  // other part reads (nothing validates the layout again).
  ParallelDims dims;
  std::shared_ptr<Communicator> world;
  std::shared_ptr<Communicator> dp;  // same tp index, across data-parallel replicas
  std::shared_ptr<Communicator> tp;  // the tensor-parallel ranks of one replica
  // Every dp x tp rank of one pipeline stage: parameters replicated over TP
  // sum their (sequence-slice) gradients here; batch-wide statistics too.
  std::shared_ptr<Communicator> dp_tp;
  std::shared_ptr<Communicator> ep;         // one copy of every expert
  std::shared_ptr<Communicator> expert_dp;  // ranks holding the same experts

  int dp_index = 0, tp_index = 0, ep_index = 0;
  // This rank among the ranks on its node (MPI_COMM_TYPE_SHARED): under
  // mpirun and srun alike. A GPU rank takes device = local_rank.
  int local_rank = 0, local_size = 1;
};

// Where the model's tensors live, which decides the collectives' backend.
enum class GroupDevice { kCpu, kCuda };

// Splits `world` (which must have dims.world() ranks) into the groups above.
// kCpu: MPI carries everything. kCuda: each rank first takes GPU local_rank
// (use_gpu_of_local_rank: throws naming the fix when a node has more ranks
// than GPUs), then every group of more than one rank gets an NCCL
// communicator for CUDA tensors beside MPI for CPU tensors
// (RoutedCommunicator); groups with the same ranks share one.
ProcessGroups make_process_groups(const ParallelDims& dims, const MpiCommunicator& world,
                                  GroupDevice device = GroupDevice::kCpu);

// One process: every group is a SelfCommunicator; `dims` must be a layout of
// one rank (default: no parallelism).
ProcessGroups single_process_groups(const ParallelDims& dims = ParallelDims());

}  // namespace moxie
