// Data-parallel gradient synchronisation: the gradients of a set of
// parameters are summed over a group, in buckets of bounded size (fewer,
// larger messages), and multiplied by a scale. Which parameters go to which
// group is the caller's business (dense over DP, experts over expert-DP).
//
// Overlap with backward: after arm(), the next backward pass starts each
// bucket's all-reduce (non-blocking) as soon as the last of its gradients has
// been accumulated, from a post-hook on each parameter's gradient accumulator.
// Buckets hold parameters in reverse order, as backward produces them, and
// start strictly in bucket order, so every rank issues the same collectives
// in the same order. sync() starts what has not started and waits for all.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "parallel/communicator.h"

namespace moxie {

class GradientSync {
 public:
  // group must outlive this object. Grads are reduced in float32 (or their
  // own dtype when float64); lower-precision grads are widened for the sum.
  // overlap: register the gradient-accumulator hooks that arm() uses.
  GradientSync(std::vector<torch::Tensor> params, Communicator& group, double scale,
               int64_t bucket_bytes = 32 << 20, bool overlap = false);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // The next backward pass starts buckets as their gradients complete. Call
  // before the backward of the last micro-batch of a step (never earlier: a
  // started bucket's gradients must not change). Needs overlap = true.
  void arm();
  // Sums every defined gradient over the group, then scales it. Collective:
  // all ranks of the group call it with the same parameters in the same order.
  void sync();
  // Buckets whose all-reduce started during the last armed backward pass.
  int64_t started_in_backward() const { return started_in_backward_; }
  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    int64_t waiting = 0;         // gradients not yet accumulated (armed)
    torch::Tensor flat;
    std::unique_ptr<PendingOp> op;
  };
  void grad_ready(size_t param);
  void start(Bucket& b);
  void finish(Bucket& b);

  std::vector<torch::Tensor> params_;
  Communicator& group_;
  double scale_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // param index -> bucket
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks_;
  bool armed_ = false;
  size_t next_to_start_ = 0;
  int64_t started_in_backward_ = 0;
};

}  // namespace moxie
