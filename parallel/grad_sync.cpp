// Bucketed gradient all-reduce.
#include "parallel/grad_sync.h"

#include <stdexcept>

namespace moxie {

GradientSync::GradientSync(std::vector<torch::Tensor> params, Communicator& group, double scale,
                           int64_t bucket_bytes)
    : params_(std::move(params)), group_(group), scale_(scale), bucket_bytes_(bucket_bytes) {}

void GradientSync::sync() {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  while (i < params_.size()) {
    // One bucket: consecutive parameters up to bucket_bytes (at least one).
    std::vector<torch::Tensor> grads;
    int64_t bytes = 0;
    for (; i < params_.size() && (grads.empty() || bytes < bucket_bytes_); ++i) {
      const auto& p = params_[i];
      if (!p.grad().defined()) {
        // Every rank must send the same bucket layout: a missing grad counts as zeros.
        p.mutable_grad() = torch::zeros_like(p);
      }
      grads.push_back(p.grad());
      bytes += p.grad().numel() * 4;
    }
    const auto dtype = grads[0].scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
    std::vector<torch::Tensor> flat;
    for (const auto& g : grads) flat.push_back(g.reshape({-1}).to(dtype));
    auto bucket = torch::cat(flat);
    group_.all_reduce(bucket, ReduceOp::kSum);
    if (scale_ != 1.0) bucket.mul_(scale_);
    int64_t offset = 0;
    for (auto& g : grads) {
      g.copy_(bucket.narrow(0, offset, g.numel()).view(g.sizes()));
      offset += g.numel();
    }
  }
}

}  // namespace moxie
