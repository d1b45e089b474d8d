// moxie train | config: the config resolved (core/config/config.h), then printed, or
// trained on by this rank's process groups (core/train/trainer.h).
#include "launch/train_command.h"

#include <iostream>
#include <utility>

#include "core/config/config.h"
#include "core/plan/plan.h"
#include "core/train/trainer.h"
#include "launch/cli_args.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_groups.h"

namespace moxie::cli {

int train_command(const std::string& command, int argc, char** argv, const JobRank& job) {
  const auto inv = parse_args(command, argc, argv);
  const auto config = moxie::load_config(inv.config_path, inv.overrides);
  if (command == "config") {
    if (job.rank == 0) std::cout << moxie::to_yaml(config);
    return 0;
  }
  auto groups = moxie::single_process_groups();
  if (job.under_mpi) {
    const moxie::ParallelDims dims = moxie::layout_of(config, job.world_size);
    groups = moxie::make_process_groups(dims, moxie::MpiCommunicator(MPI_COMM_WORLD),
                                        config.train.device == moxie::DeviceKind::kCuda
                                            ? moxie::GroupDevice::kCuda
                                            : moxie::GroupDevice::kCpu);
  }
  moxie::Trainer trainer(config, std::move(groups), std::cout);
  trainer.run();
  return 0;
}

}  // namespace moxie::cli
