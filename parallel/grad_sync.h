// Data-parallel gradient synchronisation: the gradients of a set of
// parameters are summed over a group, in buckets of bounded size (fewer,
// larger messages), and multiplied by a scale. Which parameters go to which
// group is the caller's business (dense over DP, experts over expert-DP).
#pragma once

#include <torch/torch.h>

#include <vector>

#include "parallel/communicator.h"

namespace moxie {

class GradientSync {
 public:
  // group must outlive this object. Grads are reduced in float32 (or their
  // own dtype when float64); lower-precision grads are widened for the sum.
  GradientSync(std::vector<torch::Tensor> params, Communicator& group, double scale,
               int64_t bucket_bytes = 32 << 20);
  // Sums every defined gradient over the group, then scales it. Collective:
  // all ranks of the group call it with the same parameters in the same order.
  void sync();

 private:
  std::vector<torch::Tensor> params_;
  Communicator& group_;
  double scale_;
  int64_t bucket_bytes_;
};

}  // namespace moxie
