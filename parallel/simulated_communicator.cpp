// The simulated group.
#include "parallel/simulated_communicator.h"

#include <numeric>
#include <stdexcept>
#include <string>

namespace moxie {

SimulatedCommunicator::SimulatedCommunicator(int rank, int size) : rank_(rank), size_(size) {
  if (size < 1 || rank < 0 || rank >= size) {
    throw std::invalid_argument("SimulatedCommunicator: rank " + std::to_string(rank) +
                                " is not in a group of " + std::to_string(size));
  }
}

void SimulatedCommunicator::all_reduce(torch::Tensor& t, ReduceOp op) {
  bytes_sent_ += t.nbytes() * (size_ - 1) / size_ * 2;  // ring: reduce-scatter + all-gather
  if (op == ReduceOp::kSum) t.mul_(size_);
}

torch::Tensor SimulatedCommunicator::all_gather(const torch::Tensor& t) {
  bytes_sent_ += t.nbytes() * (size_ - 1);
  std::vector<int64_t> reps(t.dim(), 1);
  if (t.dim() == 0) return t.reshape({1}).repeat({size_});
  reps[0] = size_;
  return t.repeat(reps);
}

torch::Tensor SimulatedCommunicator::reduce_scatter(const torch::Tensor& t, ReduceOp op) {
  const int64_t n = t.size(0) / size_;
  bytes_sent_ += t.nbytes() * (size_ - 1) / size_;
  auto mine = t.narrow(0, rank_ * n, n).clone();
  if (op == ReduceOp::kSum) mine.mul_(size_);
  return mine;
}

torch::Tensor SimulatedCommunicator::all_to_all(const torch::Tensor& input,
                                                const std::vector<int64_t>& send_rows,
                                                const std::vector<int64_t>& recv_rows) {
  const int64_t row_bytes = input.dim() == 0 || input.size(0) == 0
                                ? 0
                                : static_cast<int64_t>(input.nbytes()) / input.size(0);
  int64_t offset = 0, self_offset = 0;
  for (int p = 0; p < size_; ++p) {
    if (p == rank_)
      self_offset = offset;
    else
      bytes_sent_ += send_rows[p] * row_bytes;
    offset += send_rows[p];
  }
  auto self_rows = input.narrow(0, self_offset, send_rows[rank_]);
  std::vector<torch::Tensor> parts;
  auto shape = input.sizes().vec();
  for (int p = 0; p < size_; ++p) {
    if (recv_rows[p] == send_rows[rank_]) {
      parts.push_back(self_rows);
    } else {
      shape[0] = recv_rows[p];
      parts.push_back(torch::zeros(shape, input.options()));
    }
  }
  return torch::cat(parts);
}

}  // namespace moxie
