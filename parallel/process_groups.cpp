// Process groups from the layout.
#include "parallel/process_groups.h"

#include <stdexcept>

#include "parallel/mpi_communicator.h"

namespace moxie {

ProcessGroups make_process_groups(const ParallelDims& dims, const MpiCommunicator& world) {
  if (world.size() != dims.world()) {
    throw LayoutError("the job has " + std::to_string(world.size()) + " ranks but the layout needs " +
                      std::to_string(dims.world()) + " (" + dims.describe() + ")");
  }
  const int r = world.rank();
  const int tp = static_cast<int>(dims.tp());
  const int ep = static_cast<int>(dims.ep());
  ProcessGroups g;
  g.tp_index = r % tp;
  g.dp_index = r / tp;
  g.ep_index = r % ep;
  g.world = world.split(0, r);
  g.tp = world.split(g.dp_index, g.tp_index);
  g.dp = world.split(g.tp_index, g.dp_index);
  g.dp_tp = world.split(0, r);  // pp = 1: every rank is on the one stage
  g.ep = world.split(r / ep, g.ep_index);
  g.expert_dp = world.split(g.ep_index, r / ep);
  MPI_Comm node = MPI_COMM_NULL;
  MOXIE_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, r, MPI_INFO_NULL, &node));
  MPI_Comm_rank(node, &g.local_rank);
  MPI_Comm_size(node, &g.local_size);
  MPI_Comm_free(&node);
  return g;
}

ProcessGroups single_process_groups() {
  ProcessGroups g;
  g.world = g.dp = g.dp_tp = g.tp = g.ep = g.expert_dp = std::make_shared<SelfCommunicator>();
  return g;
}

}  // namespace moxie
