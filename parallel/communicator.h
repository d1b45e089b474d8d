// Communicator: the collectives moxie needs, behind one interface. The MPI
// backend carries CPU tensors; an NCCL backend for CUDA tensors plugs in
// behind the same interface. Nothing else in moxie talks to MPI or NCCL.
//
// All calls are collective over the communicator's ranks and blocking: they
// return when this rank's part is complete. Tensors are contiguous and laid
// out identically on every rank unless a call says otherwise.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

namespace moxie {

enum class ReduceOp { kSum, kAvg, kMax };

// What all_to_all_async does with the rows a rank sends itself. kInPlace: they
// are not moved (its block of `input` is not read, its block of `out` is not
// written), for a caller that writes them into `out` directly.
enum class SelfRows { kCopy, kInPlace };

// A collective in flight. wait() returns when this rank's part is complete
// (the tensor it was started on then holds the result); calling it again is a
// no-op. Must be waited before the tensor is read or freed.
class PendingOp {
 public:
  virtual ~PendingOp() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In place: every rank ends with the reduction of all ranks' `t`.
  virtual void all_reduce(torch::Tensor& t, ReduceOp op) = 0;
  // all_reduce started without waiting for it, so that computation overlaps
  // the transfer. Ranks must start their async collectives in the same order.
  // Default: completes at once (a backend without non-blocking collectives).
  virtual std::unique_ptr<PendingOp> all_reduce_async(torch::Tensor& t, ReduceOp op);
  // Concatenation of every rank's `t` along dim 0, in rank order.
  virtual torch::Tensor all_gather(const torch::Tensor& t) = 0;
  // Reduces `t` over ranks, then returns rank r's r-th of size() equal slices along dim 0.
  virtual torch::Tensor reduce_scatter(const torch::Tensor& t, ReduceOp op) = 0;
  // In place: every rank ends with `root`'s `t`.
  virtual void broadcast(torch::Tensor& t, int root) = 0;
  virtual void barrier() = 0;
  // Rows of `input` (dim 0) go to peers: the first send_rows[0] to rank 0, the
  // next send_rows[1] to rank 1, ... Returns what the peers sent, grouped by
  // source rank; recv_rows[p] rows come from rank p. Other dims are equal on all ranks.
  virtual torch::Tensor all_to_all(const torch::Tensor& input,
                                   const std::vector<int64_t>& send_rows,
                                   const std::vector<int64_t>& recv_rows) = 0;
  // all_to_all into `out` (contiguous, sum(recv_rows) rows, other dims as
  // `input`), started without waiting, so that computation overlaps the
  // transfer: `out` holds the result once the op is waited; until then neither
  // tensor may be written, nor `out` read. The op keeps both alive. Ranks must
  // start their async collectives in the same order.
  // Default: completes at once (a backend without non-blocking collectives).
  virtual std::unique_ptr<PendingOp> all_to_all_async(const torch::Tensor& input,
                                                      const std::vector<int64_t>& send_rows,
                                                      const std::vector<int64_t>& recv_rows,
                                                      const torch::Tensor& out, SelfRows self);
};

struct DoneOp : PendingOp {
  void wait() override {}
};
inline std::unique_ptr<PendingOp> Communicator::all_reduce_async(torch::Tensor& t, ReduceOp op) {
  all_reduce(t, op);
  return std::make_unique<DoneOp>();
}
inline std::unique_ptr<PendingOp> Communicator::all_to_all_async(
    const torch::Tensor& input, const std::vector<int64_t>& send_rows,
    const std::vector<int64_t>& recv_rows, const torch::Tensor& out, SelfRows self) {
  auto result = all_to_all(input, send_rows, recv_rows);
  TORCH_CHECK(out.sizes() == result.sizes(), "all_to_all_async: out has shape ", out.sizes(),
              " but the peers send ", result.sizes());
  if (self == SelfRows::kCopy) {
    out.copy_(result);
  } else {
    int64_t offset = 0;
    for (int p = 0; p < size(); ++p) {
      if (p != rank())
        out.narrow(0, offset, recv_rows[p]).copy_(result.narrow(0, offset, recv_rows[p]));
      offset += recv_rows[p];
    }
  }
  return std::make_unique<DoneOp>();
}

// A communicator of one rank: every collective is the identity. The
// single-process path runs the same code as the distributed one.
class SelfCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce(torch::Tensor&, ReduceOp) override {}
  torch::Tensor all_gather(const torch::Tensor& t) override { return t.clone(); }
  torch::Tensor reduce_scatter(const torch::Tensor& t, ReduceOp) override { return t.clone(); }
  void broadcast(torch::Tensor&, int) override {}
  void barrier() override {}
  torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>&,
                           const std::vector<int64_t>&) override {
    return input.clone();
  }
  std::unique_ptr<PendingOp> all_to_all_async(const torch::Tensor& input,
                                              const std::vector<int64_t>&,
                                              const std::vector<int64_t>&, const torch::Tensor& out,
                                              SelfRows self) override {
    if (self == SelfRows::kCopy) out.copy_(input);
    return std::make_unique<DoneOp>();
  }
};

}  // namespace moxie
