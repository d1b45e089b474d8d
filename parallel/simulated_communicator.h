// A communicator that plays one rank of a group whose other ranks are not
// there: every peer is assumed to hold and send what this rank holds and
// sends to itself. Shapes and byte counts are those of the real job, values
// are stand-ins. Used by `moxie plan --materialize-rank` to run one rank's
// shard of a model far larger than this machine.
#pragma once

#include "parallel/communicator.h"

namespace moxie {

class SimulatedCommunicator : public Communicator {
 public:
  SimulatedCommunicator(int rank, int size);
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce(torch::Tensor& t, ReduceOp op) override;  // peers hold `t` too
  torch::Tensor all_gather(const torch::Tensor& t) override;
  torch::Tensor reduce_scatter(const torch::Tensor& t, ReduceOp op) override;
  void broadcast(torch::Tensor&, int) override {}
  void barrier() override {}
  // Peer p sends recv_rows[p] rows: copies of the rows this rank sends to
  // itself when the counts agree (a symmetric job), else zeros.
  torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                           const std::vector<int64_t>& recv_rows) override;

  // Payload bytes this rank would have sent to other ranks so far.
  int64_t bytes_sent() const { return bytes_sent_; }

 private:
  int rank_, size_;
  int64_t bytes_sent_ = 0;
};

}  // namespace moxie
