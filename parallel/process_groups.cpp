// Process groups from the layout.
#include "parallel/process_groups.h"

#include <stdexcept>
#include <vector>

#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"
#include "parallel/param_layout.h"
#include "parallel/routed_communicator.h"

namespace moxie {

namespace {
// NCCL beside MPI in every group of more than one rank, one NCCL
// communicator per distinct set of ranks (made in the same order on every
// rank: NCCL's initialisation is collective).
void add_nccl(ProcessGroups& g) {
  std::shared_ptr<Communicator> world = g.world;  // MPI: every rank takes every decision alike
  auto everywhere = [&](bool mine) {
    auto flag = torch::tensor({mine ? 1 : 0}, torch::kInt);
    world->all_reduce(flag, ReduceOp::kSum);
    return flag.item<int>() == world->size();
  };
  std::vector<std::pair<MpiCommunicator*, std::shared_ptr<Communicator>>> made;
  for (auto* group : {&g.world, &g.dp, &g.tp, &g.dp_tp, &g.ep, &g.expert_dp}) {
    auto* mpi = dynamic_cast<MpiCommunicator*>(group->get());
    std::shared_ptr<Communicator> device;
    if (everywhere(mpi->size() == 1)) {
      device = std::make_shared<SelfCommunicator>();
    } else {
      for (const auto& [other, nccl] : made)
        if (!device && everywhere(other->same_ranks(*mpi))) device = nccl;
      if (!device) {
        device = make_nccl_communicator(*mpi);
        made.emplace_back(mpi, device);
      }
    }
    *group = std::make_shared<RoutedCommunicator>(*group, device);
  }
}
}  // namespace

ProcessGroups make_process_groups(const ParallelDims& dims, const MpiCommunicator& world,
                                  GroupDevice device) {
  if (world.size() != dims.world()) {
    throw LayoutError("the job has " + std::to_string(world.size()) +
                      " ranks but the layout needs " + std::to_string(dims.world()) + " (" +
                      dims.describe() + ")");
  }
  const int r = world.rank();
  const auto at = coordinates_of(dims, r);
  ProcessGroups g;
  g.dims = dims;
  g.tp_index = static_cast<int>(at.tp_index);
  g.dp_index = static_cast<int>(at.dp_index);
  g.ep_index = static_cast<int>(at.ep_index);
  const int expert_dp_rank = static_cast<int>(at.expert_dp_rank);
  g.world = world.split(0, r);
  g.tp = world.split(g.dp_index, g.tp_index);
  g.dp = world.split(g.tp_index, g.dp_index);
  g.dp_tp = world.split(0, r);  // pp = 1: every rank is on the one stage
  g.ep = world.split(expert_dp_rank, g.ep_index);
  g.expert_dp = world.split(g.ep_index, expert_dp_rank);
  MPI_Comm node = MPI_COMM_NULL;
  MOXIE_MPI_CHECK(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, r, MPI_INFO_NULL, &node));
  MPI_Comm_rank(node, &g.local_rank);
  MPI_Comm_size(node, &g.local_size);
  MPI_Comm_free(&node);
  if (device == GroupDevice::kCuda) {
    use_gpu_of_local_rank(g.local_rank, g.local_size);
    add_nccl(g);
  }
  return g;
}

ProcessGroups single_process_groups(const ParallelDims& dims) {
  if (dims.world() != 1) {
    throw LayoutError("one process, but the layout needs " + std::to_string(dims.world()) +
                      " ranks (" + dims.describe() + ")");
  }
  ProcessGroups g;
  g.dims = dims;
  g.world = g.dp = g.dp_tp = g.tp = g.ep = g.expert_dp = std::make_shared<SelfCommunicator>();
  return g;
}

}  // namespace moxie
