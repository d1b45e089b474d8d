// Expert-parallel dispatch under mpiexec: the all-to-all dispatcher (permute,
// count exchange, all-to-all; then back and weighted unpermute) against, in
// the same run:
//   bare     two MPI_Alltoallv (there and back) of the same rows on
//            preallocated buffers;
//   copy     one memcpy of the payload (the rows this rank sends: one read
//            and one write of them), all ranks at once;
//   bound    bare + copy: the dispatcher's copy bound, the least it can cost
//            when the permutation writes the send buffer and the weighted
//            unpermutation reads the receive buffer with no other pass.
// Also times forward+backward (rows to experts and back, upstream gradient
// into x and the routing weights). Times are the max over ranks of the mean of
// `reps` repetitions after warm-ups; rank 0 prints.
// Usage: mpiexec -n 2 bench_dispatch [tokens_per_rank] [d_model] [experts] [top_k] [reps]
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "core/common/allocator.h"
#include "experts/dispatcher.h"
#include "parallel/mpi_communicator.h"

using namespace moxie;
using Clock = std::chrono::steady_clock;

namespace {

int64_t arg(int argc, char** argv, int i, int64_t fallback) {
  if (argc <= i) return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(argv[i], &end, 10);
  if (*end != '\0' || v <= 0 || v > (1LL << 24)) {
    std::fprintf(stderr,
                 "bench_dispatch: argument %d ('%s') must be a positive integer below 2^24\n"
                 "usage: bench_dispatch [tokens_per_rank] [d_model] [experts] [top_k] [reps]\n",
                 i, argv[i]);
    std::exit(2);
  }
  return v;
}

// Mean seconds of `reps` runs of f after two warm-ups, ranks started together.
double timed(MPI_Comm comm, int reps, const std::function<void()>& f) {
  double total = 0;
  for (int r = -2; r < reps; ++r) {
    MPI_Barrier(comm);
    const auto t0 = Clock::now();
    f();
    if (r >= 0) total += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return total / reps;
}

}  // namespace

int main(int argc, char** argv) {
  keep_freed_memory_for_reuse();
  MpiRuntime mpi(&argc, &argv);
  const int64_t T = arg(argc, argv, 1, 8192);
  const int64_t D = arg(argc, argv, 2, 1024);
  const int64_t E = arg(argc, argv, 3, 8);
  const int64_t K = arg(argc, argv, 4, 2);
  const int reps = static_cast<int>(arg(argc, argv, 5, 10));
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int ep = comm.size();
  if (E % ep != 0 || K > E) {
    if (comm.rank() == 0)
      std::fprintf(stderr,
                   "bench_dispatch: experts (%lld) must be a multiple of the ranks (%d) "
                   "and at least top_k (%lld)\n",
                   static_cast<long long>(E), ep, static_cast<long long>(K));
    return 2;
  }
  MoEOptions o;
  o.num_experts = E;
  o.top_k = K;
  AllToAllTokenDispatcher dispatcher(o, comm);
  torch::manual_seed(comm.rank());

  auto x = torch::randn({T, D});
  RouterOutput routing;
  routing.expert_idx_TK = torch::randint(0, E, {T, K});
  routing.weight_TK = torch::rand({T, K});

  std::vector<int64_t> send_rows, recv_rows;
  double t_disp = 0;
  {
    torch::NoGradGuard no_grad;
    t_disp = timed(MPI_COMM_WORLD, reps, [&] {
      auto d = dispatcher.dispatch(x, routing);
      auto back = dispatcher.combine(d.tokens_ND, d);
      send_rows = d.send_rows;
      recv_rows = d.recv_rows;
    });
  }
  if (const char* trace = std::getenv("MOXIE_PROFILE")) {
    torch::NoGradGuard no_grad;
    torch::autograd::profiler::RecordProfile guard(std::string(trace) + "." +
                                                   std::to_string(comm.rank()));
    auto dd = dispatcher.dispatch(x, routing);
    dispatcher.combine(dd.tokens_ND, dd);
  }
  // Forward and backward: experts as identity, a fixed upstream gradient.
  auto upstream = torch::randn({T, D});
  const double t_fwd_bwd = timed(MPI_COMM_WORLD, reps, [&] {
    auto xg = x.clone().requires_grad_(true);
    RouterOutput r = routing;
    r.weight_TK = routing.weight_TK.clone().requires_grad_(true);
    auto d = dispatcher.dispatch(xg, r);
    auto y = dispatcher.combine(d.tokens_ND, d);
    y.backward(upstream);
  });

  int64_t s_total = 0, r_total = 0;
  for (int p = 0; p < ep; ++p) {
    s_total += send_rows[p];
    r_total += recv_rows[p];
  }
  // The communicator's all_to_all alone on the same rows (no permutation).
  double t_comm = 0;
  {
    auto rows = torch::randn({s_total, D});
    t_comm = timed(MPI_COMM_WORLD, reps, [&] {
      auto there = comm.all_to_all(rows, send_rows, recv_rows);
      auto back = comm.all_to_all(there, recv_rows, send_rows);
    });
  }
  // Bare MPI: the same row counts, there and back, on preallocated buffers.
  std::vector<int> send(ep), recv(ep), sdis(ep), rdis(ep);
  int64_t s_off = 0, r_off = 0;
  for (int p = 0; p < ep; ++p) {
    send[p] = static_cast<int>(send_rows[p] * D);
    recv[p] = static_cast<int>(recv_rows[p] * D);
    sdis[p] = static_cast<int>(s_off);
    rdis[p] = static_cast<int>(r_off);
    s_off += send[p];
    r_off += recv[p];
  }
  auto sbuf = torch::randn({s_total * D}), rbuf = torch::ones({r_total * D});
  const double t_bare = timed(MPI_COMM_WORLD, reps, [&] {
    MPI_Alltoallv(sbuf.data_ptr(), send.data(), sdis.data(), MPI_FLOAT, rbuf.data_ptr(),
                  recv.data(), rdis.data(), MPI_FLOAT, MPI_COMM_WORLD);
    MPI_Alltoallv(rbuf.data_ptr(), recv.data(), rdis.data(), MPI_FLOAT, sbuf.data_ptr(),
                  send.data(), sdis.data(), MPI_FLOAT, MPI_COMM_WORLD);
  });
  // This machine's copy bandwidth on the payload, every rank copying at once.
  const size_t payload = static_cast<size_t>(s_total * D) * sizeof(float);
  auto cbuf = torch::ones({s_total * D});
  const double t_copy =
      timed(MPI_COMM_WORLD, reps, [&] { std::memcpy(cbuf.data_ptr(), sbuf.data_ptr(), payload); });

  double times[5] = {t_disp, t_bare, t_comm, t_copy, t_fwd_bwd};
  MPI_Allreduce(MPI_IN_PLACE, times, 5, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  double bytes = 2.0 * static_cast<double>(payload);  // there and back
  double copy_bytes = static_cast<double>(payload);
  MPI_Allreduce(MPI_IN_PLACE, &bytes, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &copy_bytes, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  if (comm.rank() == 0) {
    const double bound = times[1] + times[3];
    std::printf("ranks %d, %lld tokens/rank, d_model %lld, %lld experts top-%lld, %d reps\n", ep,
                static_cast<long long>(T), static_cast<long long>(D), static_cast<long long>(E),
                static_cast<long long>(K), reps);
    std::printf("memcpy of the payload (%.1f MB/rank):  %8.2f ms  %7.2f GB/s per rank\n",
                copy_bytes / 1e6, 1e3 * times[3], copy_bytes / times[3] / 1e9);
    std::printf("bare MPI_Alltoallv x2:                %8.2f ms  %7.2f GB/s of token payload\n",
                1e3 * times[1], bytes / times[1] / 1e9);
    std::printf("copy bound (bare x2 + memcpy):        %8.2f ms\n", 1e3 * bound);
    std::printf("Communicator::all_to_all x2:          %8.2f ms  %7.2f GB/s\n", 1e3 * times[2],
                bytes / times[2] / 1e9);
    std::printf("dispatcher (dispatch+combine):        %8.2f ms  %7.2f GB/s\n", 1e3 * times[0],
                bytes / times[0] / 1e9);
    std::printf("dispatcher forward+backward:          %8.2f ms\n", 1e3 * times[4]);
    std::printf(
        "dispatcher / copy bound = %.3f (time)   bare / dispatcher = %.3f   "
        "bare / Communicator::all_to_all = %.3f   forward+backward / (2 x copy bound) "
        "= %.3f\n",
        times[0] / bound, times[1] / times[0], times[1] / times[2], times[4] / (2 * bound));
  }
  return 0;
}
