// MPI backend of Communicator (CPU tensors), and the MPI runtime's lifetime.
#pragma once

#include <mpi.h>

#include <string>

#include "parallel/communicator.h"

namespace moxie {

// Throws std::runtime_error naming the MPI call, its error text, file and line.
void mpi_check(int code, const char* call, const char* file, int line);
#define MOXIE_MPI_CHECK(call) ::moxie::mpi_check((call), #call, __FILE__, __LINE__)

// RAII for MPI_Init_thread / MPI_Finalize. One per process, made by main.
// Errors from MPI calls return codes (MPI_ERRORS_RETURN) so they become
// exceptions instead of aborting without a word.
class MpiRuntime {
 public:
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;
  // Ends every rank of the job at once: for a fatal error on one rank, so the
  // others never wait forever in a collective.
  [[noreturn]] static void abort_job(int code);
};

// Owns an MPI communicator (a duplicate or a split of another) and frees it.
class MpiCommunicator : public Communicator {
 public:
  // Duplicates `comm` so moxie's traffic never mixes with the caller's.
  explicit MpiCommunicator(MPI_Comm comm);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  // Ranks with the same color form one new communicator, ordered by key.
  std::unique_ptr<MpiCommunicator> split(int color, int key) const;
  // Whether `other` holds the same ranks in the same order.
  bool same_ranks(const MpiCommunicator& other) const;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce(torch::Tensor& t, ReduceOp op) override;
  std::unique_ptr<PendingOp> all_reduce_async(torch::Tensor& t, ReduceOp op) override;
  torch::Tensor all_gather(const torch::Tensor& t) override;
  torch::Tensor reduce_scatter(const torch::Tensor& t, ReduceOp op) override;
  void broadcast(torch::Tensor& t, int root) override;
  void barrier() override;
  torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                           const std::vector<int64_t>& recv_rows) override;
  std::unique_ptr<PendingOp> all_to_all_async(const torch::Tensor& input,
                                              const std::vector<int64_t>& send_rows,
                                              const std::vector<int64_t>& recv_rows,
                                              const torch::Tensor& out, SelfRows self) override;

 private:
  struct Adopt {};
  MpiCommunicator(MPI_Comm comm, Adopt);
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

}  // namespace moxie
