// NCCL backend of Communicator, for CUDA tensors: one rank per GPU.
//
// The communicator is bootstrapped over MPI (rank 0 makes the NCCL unique id
// and broadcasts it). Collectives run on the communicator's own CUDA stream:
// it first waits (an event, no host sync) for the work queued so far on the
// caller's current stream, and the caller's stream then waits for the
// collective. Every call returns once the work is queued; results are ready
// for anything queued afterwards on the caller's stream. Tensors touched on
// the NCCL stream are recorded with the caching allocator so their memory is
// not reused before the collective is done.
#pragma once

#include <memory>

#include "parallel/communicator.h"

namespace moxie {

class MpiCommunicator;

// True when this build has NCCL and a CUDA device is visible.
bool nccl_available();

// Visible CUDA devices (0 without NCCL or CUDA).
int cuda_device_count();

// One GPU per rank: makes device `local_rank` current. Throws
// std::runtime_error, naming the rank and the fix, when this node's ranks
// outnumber its visible GPUs (NCCL cannot put two ranks on one GPU).
void use_gpu_of_local_rank(int local_rank, int local_size);

// Makes the NCCL communicator over the same ranks as `bootstrap`, on the
// current CUDA device (the launcher sets device = local rank). Throws
// std::runtime_error naming the failing call when this build has no NCCL or
// no device is visible.
std::unique_ptr<Communicator> make_nccl_communicator(MpiCommunicator& bootstrap);

}  // namespace moxie
