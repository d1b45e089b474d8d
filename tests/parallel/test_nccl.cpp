// NCCL communicator: every collective on CUDA tensors against the CPU result.
// Skipped (exit 77, with the reason) where no GPU is visible, as in CI; runs
// under mpiexec with one rank per GPU where one is lent.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdlib>
#include <iostream>

#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"

using namespace moxie;

namespace {
MpiCommunicator* bootstrap = nullptr;

torch::Tensor input_of(int r) { return torch::arange(6, torch::kFloat) * (r + 1) + r; }
torch::TensorOptions gpu() { return torch::TensorOptions().device(torch::kCUDA); }
}  // namespace

TEST_CASE("NCCL collectives match their CPU results") {
  auto comm = make_nccl_communicator(*bootstrap);
  const int n = comm->size(), me = comm->rank();
  auto sum = torch::zeros({6});
  for (int r = 0; r < n; ++r) sum += input_of(r);

  auto t = input_of(me).to(torch::kCUDA);
  comm->all_reduce(t, ReduceOp::kSum);
  CHECK(torch::equal(t.cpu(), sum));
  auto bf = input_of(me).to(gpu().dtype(torch::kBFloat16));
  comm->all_reduce(bf, ReduceOp::kAvg);
  CHECK(torch::allclose(bf.cpu().to(torch::kFloat), sum / n, 1e-2, 1e-2));

  std::vector<torch::Tensor> parts;
  for (int r = 0; r < n; ++r) parts.push_back(input_of(r));
  CHECK(torch::equal(comm->all_gather(input_of(me).to(torch::kCUDA)).cpu(), torch::cat(parts)));

  auto big = torch::arange(n * 4, torch::kFloat).view({n * 2, 2});
  auto rs = comm->reduce_scatter(big.to(torch::kCUDA), ReduceOp::kSum).cpu();
  CHECK(torch::equal(rs, (big * n).narrow(0, 2 * me, 2)));

  auto b = input_of(me).to(torch::kCUDA);
  comm->broadcast(b, 0);
  CHECK(torch::equal(b.cpu(), input_of(0)));

  // Uneven all-to-all: rank s sends (s + p) % 3 rows to rank p.
  std::vector<int64_t> send(n), recv(n);
  std::vector<torch::Tensor> rows;
  for (int p = 0; p < n; ++p) {
    send[p] = (me + p) % 3;
    recv[p] = (p + me) % 3;
    for (int64_t k = 0; k < send[p]; ++k)
      rows.push_back(torch::tensor({{1.0f * me, 1.0f * p, 1.0f * k}}));
  }
  auto in = rows.empty() ? torch::zeros({0, 3}) : torch::cat(rows);
  auto out = comm->all_to_all(in.to(torch::kCUDA), send, recv).cpu();
  std::vector<torch::Tensor> expected;
  for (int s = 0; s < n; ++s)
    for (int64_t k = 0; k < (s + me) % 3; ++k)
      expected.push_back(torch::tensor({{1.0f * s, 1.0f * me, 1.0f * k}}));
  CHECK(torch::equal(out, expected.empty() ? torch::zeros({0, 3}) : torch::cat(expected)));
  comm->barrier();
}

int main(int argc, char** argv) {
  MpiRuntime mpi(&argc, &argv);
  MpiCommunicator world(MPI_COMM_WORLD);
  if (!nccl_available()) {
    if (world.rank() == 0) {
#ifdef MOXIE_HAVE_NCCL
      std::cout << "SKIP: no CUDA device is visible; the NCCL tests need one GPU per rank\n";
#else
      std::cout << "SKIP: this build has no NCCL\n";
#endif
    }
    return 77;
  }
  // One GPU per rank: device = local rank. More ranks than GPUs on a node
  // cannot run NCCL: every rank says why and skips alike.
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  const char* local_size = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  try {
    use_gpu_of_local_rank(local ? std::atoi(local) : 0, local_size ? std::atoi(local_size) : 1);
  } catch (const std::exception& e) {
    std::cout << "SKIP (rank " << world.rank() << "): " << e.what() << "\n";
    return 77;
  }
  bootstrap = &world;
  return Catch::Session().run(argc, argv);
}
