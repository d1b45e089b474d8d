// Expert-parallel dispatch throughput under mpiexec: the all-to-all
// dispatcher (permute, count exchange, all-to-all; then back and unpermute)
// against a bare MPI_Alltoallv pair moving the same rows, in the same run.
// Reports token payload bytes/s for both and their ratio (rank 0 prints).
// Usage: mpiexec -n 4 bench_dispatch [tokens_per_rank] [d_model] [experts] [top_k]
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/common/allocator.h"
#include "experts/dispatcher.h"
#include "parallel/mpi_communicator.h"

using namespace moxie;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  keep_freed_memory_for_reuse();
  MpiRuntime mpi(&argc, &argv);
  const int64_t T = argc > 1 ? std::atoll(argv[1]) : 8192;
  const int64_t D = argc > 2 ? std::atoll(argv[2]) : 1024;
  const int64_t E = argc > 3 ? std::atoll(argv[3]) : 8;
  const int64_t K = argc > 4 ? std::atoll(argv[4]) : 2;
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int ep = comm.size();
  MoEOptions o;
  o.num_experts = E;
  o.top_k = K;
  AllToAllTokenDispatcher dispatcher(o, comm);
  torch::NoGradGuard no_grad;
  torch::manual_seed(comm.rank());

  auto x = torch::randn({T, D});
  RouterOutput routing;
  routing.expert_idx_TK = torch::randint(0, E, {T, K});
  routing.weight_TK = torch::rand({T, K});
  const int reps = 10;

  // Dispatcher: dispatch + combine, experts as identity.
  double t_disp = 0;
  Dispatched d;
  for (int r = -2; r < reps; ++r) {
    comm.barrier();
    const auto t0 = Clock::now();
    d = dispatcher.dispatch(x, routing);
    auto back = dispatcher.combine(d.tokens_ND, d);
    if (r >= 0) t_disp += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  if (const char* trace = std::getenv("MOXIE_PROFILE")) {
    torch::autograd::profiler::RecordProfile guard(std::string(trace) + "." +
                                                   std::to_string(comm.rank()));
    auto dd = dispatcher.dispatch(x, routing);
    dispatcher.combine(dd.tokens_ND, dd);
  }
  // The communicator's all_to_all alone on the same rows (no permutation).
  double t_comm = 0;
  {
    auto rows = torch::randn({d.plan.source_token_N.size(0), D});
    for (int r = -2; r < reps; ++r) {
      comm.barrier();
      const auto t0 = Clock::now();
      auto there = comm.all_to_all(rows, d.send_rows, d.recv_rows);
      auto back = comm.all_to_all(there, d.recv_rows, d.send_rows);
      if (r >= 0) t_comm += std::chrono::duration<double>(Clock::now() - t0).count();
    }
  }
  // Bare MPI: the same row counts, there and back, on preallocated buffers.
  std::vector<int> send(ep), recv(ep), sdis(ep), rdis(ep);
  int64_t s_total = 0, r_total = 0;
  for (int p = 0; p < ep; ++p) {
    send[p] = static_cast<int>(d.send_rows[p] * D);
    recv[p] = static_cast<int>(d.recv_rows[p] * D);
    sdis[p] = static_cast<int>(s_total);
    rdis[p] = static_cast<int>(r_total);
    s_total += send[p];
    r_total += recv[p];
  }
  auto sbuf = torch::randn({s_total}), rbuf = torch::empty({r_total});
  double t_bare = 0;
  for (int r = -2; r < reps; ++r) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = Clock::now();
    MPI_Alltoallv(sbuf.data_ptr(), send.data(), sdis.data(), MPI_FLOAT, rbuf.data_ptr(),
                  recv.data(), rdis.data(), MPI_FLOAT, MPI_COMM_WORLD);
    MPI_Alltoallv(rbuf.data_ptr(), recv.data(), rdis.data(), MPI_FLOAT, sbuf.data_ptr(),
                  send.data(), sdis.data(), MPI_FLOAT, MPI_COMM_WORLD);
    if (r >= 0) t_bare += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  // Payload: every row this rank sends out and gets back, summed over ranks (max time).
  double times[3] = {t_disp / reps, t_bare / reps, t_comm / reps};
  MPI_Allreduce(MPI_IN_PLACE, times, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  double bytes = 2.0 * static_cast<double>(s_total) * sizeof(float);
  MPI_Allreduce(MPI_IN_PLACE, &bytes, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  if (comm.rank() == 0) {
    std::printf("ranks %d, %lld tokens/rank, d_model %lld, %lld experts top-%lld\n", ep,
                static_cast<long long>(T), static_cast<long long>(D), static_cast<long long>(E),
                static_cast<long long>(K));
    std::printf("dispatcher (dispatch+combine): %8.2f ms  %7.2f GB/s of token payload\n",
                1e3 * times[0], bytes / times[0] / 1e9);
    std::printf("bare MPI_Alltoallv x2:         %8.2f ms  %7.2f GB/s\n", 1e3 * times[1],
                bytes / times[1] / 1e9);
    std::printf("Communicator::all_to_all x2:   %8.2f ms  %7.2f GB/s\n", 1e3 * times[2],
                bytes / times[2] / 1e9);
    std::printf("dispatcher / bare = %.3f   Communicator::all_to_all / bare = %.3f\n",
                times[1] / times[0], times[1] / times[2]);
  }
  return 0;
}
