// RoutedCommunicator: one group of ranks with two backends, each tensor
// carried by the one for its device: CUDA tensors by NCCL (or, in a group of
// one, by a SelfCommunicator), CPU tensors by MPI. The trainer's host-side
// scalars (target counts, metrics, the all-ranks-agree checks) and the
// model's CUDA tensors thus share one Communicator& without either knowing.
// This is the factory's choice "from the tensors' device" (ARCHITECTURE.md).
#pragma once

#include <memory>
#include <utility>

#include "parallel/communicator.h"

namespace moxie {

class RoutedCommunicator : public Communicator {
 public:
  // Both over the same ranks in the same order.
  RoutedCommunicator(std::shared_ptr<Communicator> host, std::shared_ptr<Communicator> device)
      : host_(std::move(host)), device_(std::move(device)) {}

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  void all_reduce(torch::Tensor& t, ReduceOp op) override { on(t).all_reduce(t, op); }
  std::unique_ptr<PendingOp> all_reduce_async(torch::Tensor& t, ReduceOp op) override {
    return on(t).all_reduce_async(t, op);
  }
  torch::Tensor all_gather(const torch::Tensor& t) override { return on(t).all_gather(t); }
  torch::Tensor reduce_scatter(const torch::Tensor& t, ReduceOp op) override {
    return on(t).reduce_scatter(t, op);
  }
  void broadcast(torch::Tensor& t, int root) override { on(t).broadcast(t, root); }
  // Both backends' queues drained: device work first, then the host.
  void barrier() override {
    device_->barrier();
    host_->barrier();
  }
  torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                           const std::vector<int64_t>& recv_rows) override {
    return on(input).all_to_all(input, send_rows, recv_rows);
  }
  std::unique_ptr<PendingOp> all_to_all_async(const torch::Tensor& input,
                                              const std::vector<int64_t>& send_rows,
                                              const std::vector<int64_t>& recv_rows,
                                              const torch::Tensor& out, SelfRows self) override {
    return on(input).all_to_all_async(input, send_rows, recv_rows, out, self);
  }

 private:
  Communicator& on(const torch::Tensor& t) { return t.is_cuda() ? *device_ : *host_; }
  std::shared_ptr<Communicator> host_, device_;
};

}  // namespace moxie
