// Bucketed gradient all-reduce, optionally overlapped with backward.
#include "parallel/grad_sync.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <stdexcept>

namespace moxie {
namespace {

// Runs after a parameter's gradient has been accumulated.
class GradReadyHook : public torch::autograd::FunctionPostHook {
 public:
  GradReadyHook(std::function<void()> ready) : ready_(std::move(ready)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& grad_inputs,
                                            const torch::autograd::variable_list&) override {
    ready_();
    return grad_inputs;
  }

 private:
  std::function<void()> ready_;
};

}  // namespace

GradientSync::GradientSync(std::vector<torch::Tensor> params, Communicator& group, double scale,
                           int64_t bucket_bytes, bool overlap)
    : params_(std::move(params)), group_(group), scale_(scale), bucket_of_(params_.size()) {
  // Reverse order: the last layers' gradients are the first to be ready.
  int64_t bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    if (buckets_.empty() || bytes >= bucket_bytes) {
      buckets_.emplace_back();
      bytes = 0;
    }
    buckets_.back().params.push_back(k);
    bucket_of_[k] = buckets_.size() - 1;
    bytes += params_[k].numel() * 4;
  }
  if (!overlap) return;
  for (size_t k = 0; k < params_.size(); ++k) {
    if (!params_[k].requires_grad()) continue;
    auto accumulator = torch::autograd::impl::grad_accumulator(params_[k]);
    const auto key =
        accumulator->add_post_hook(std::make_unique<GradReadyHook>([this, k] { grad_ready(k); }));
    hooks_.emplace_back(std::move(accumulator), key);
  }
}

GradientSync::~GradientSync() {
  for (auto& [node, key] : hooks_) node->del_post_hook(key);
}

void GradientSync::arm() {
  if (hooks_.empty() && !params_.empty()) {
    throw std::logic_error("GradientSync::arm: constructed without overlap");
  }
  for (auto& b : buckets_) {
    b.waiting = static_cast<int64_t>(b.params.size());
    b.op.reset();
    b.flat = torch::Tensor();
  }
  next_to_start_ = 0;
  started_in_backward_ = 0;
  armed_ = true;
}

void GradientSync::grad_ready(size_t param) {
  if (!armed_) return;
  auto& b = buckets_[bucket_of_[param]];
  if (b.waiting > 0) --b.waiting;
  while (next_to_start_ < buckets_.size() && buckets_[next_to_start_].waiting == 0) {
    start(buckets_[next_to_start_++]);
    ++started_in_backward_;
  }
}

void GradientSync::start(Bucket& b) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> flat;
  for (size_t k : b.params) {
    auto& p = params_[k];
    // Every rank must send the same bucket layout: a missing grad counts as zeros.
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    flat.push_back(p.grad().reshape({-1}));
  }
  const auto dtype = flat[0].scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  for (auto& f : flat) f = f.to(dtype);
  b.flat = torch::cat(flat);
  b.op = group_.all_reduce_async(b.flat, ReduceOp::kSum);
}

void GradientSync::finish(Bucket& b) {
  torch::NoGradGuard no_grad;
  b.op->wait();
  if (scale_ != 1.0) b.flat.mul_(scale_);
  int64_t offset = 0;
  for (size_t k : b.params) {
    auto g = params_[k].grad();
    g.copy_(b.flat.narrow(0, offset, g.numel()).view(g.sizes()));
    offset += g.numel();
  }
  b.op.reset();
  b.flat = torch::Tensor();
}

void GradientSync::sync() {
  if (armed_) {
    armed_ = false;
    while (next_to_start_ < buckets_.size()) start(buckets_[next_to_start_++]);
    for (auto& b : buckets_) finish(b);
    return;
  }
  for (auto& b : buckets_) {
    start(b);
    finish(b);
  }
}

}  // namespace moxie
