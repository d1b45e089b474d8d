// AdamW step through ATen's fused kernel (_fused_adamw_): one pass over each
// parameter's weight, grad and moments, on CPU (vectorised, multi-threaded)
// and CUDA (multi-tensor) alike, instead of ~8 separate elementwise ops.
#include "optim/adamw.h"

#include <stdexcept>

namespace moxie {
namespace {

bool full_precision(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kDouble;
}

// The tensors of one fused call: one group, one device, one dtype.
struct Bucket {
  torch::Device device;
  torch::ScalarType dtype;
  std::vector<torch::Tensor> weights, grads, exp_avgs, exp_avg_sqs, steps;
  std::vector<torch::Tensor> params_lowp, masters;  // rounded back after the update
};

Bucket& bucket_for(std::vector<Bucket>& buckets, const torch::Tensor& weight) {
  for (auto& b : buckets) {
    if (b.device == weight.device() && b.dtype == weight.scalar_type()) return b;
  }
  buckets.push_back(Bucket{weight.device(), weight.scalar_type(), {}, {}, {}, {}, {}, {}, {}});
  return buckets.back();
}

void check_param(const ParamGroup& group, size_t index) {
  const auto& p = group.params[index];
  const std::string where =
      "AdamW: parameter " + std::to_string(index) + " of group '" + group.name + "'";
  if (!p.defined()) throw std::invalid_argument(where + " is undefined");
  if (!p.is_floating_point()) throw std::invalid_argument(where + " is not floating point");
  // The fused kernel walks raw memory, so weight, grad and moments must share
  // one dense layout.
  if (!p.is_contiguous()) {
    throw std::invalid_argument(where +
                                " is not contiguous; make it contiguous before registering it");
  }
}

}  // namespace

AdamW::AdamW(std::vector<ParamGroup> groups, const OptimOptions& options)
    : groups_(std::move(groups)), options_(options) {
  torch::NoGradGuard no_grad;
  for (const auto& group : groups_) {
    std::vector<ParamState> states;
    std::vector<torch::Tensor> steps;
    for (size_t i = 0; i < group.params.size(); ++i) {
      check_param(group, i);
      const auto& p = group.params[i];
      ParamState s;
      if (!full_precision(p)) s.master = p.detach().to(torch::kFloat, false, /*copy=*/true);
      const auto& like = s.master.defined() ? s.master : p;
      s.exp_avg = torch::zeros_like(like, torch::MemoryFormat::Contiguous);
      s.exp_avg_sq = torch::zeros_like(like, torch::MemoryFormat::Contiguous);
      states.push_back(std::move(s));
      steps.push_back(torch::zeros({}, torch::dtype(torch::kFloat).device(p.device())));
    }
    state_.push_back(std::move(states));
    step_tensors_.push_back(std::move(steps));
  }
}

void AdamW::set_step(size_t group, size_t index, int64_t step) {
  state_.at(group).at(index).step = step;
  torch::NoGradGuard no_grad;
  step_tensors_.at(group).at(index).fill_(static_cast<double>(step));
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const auto& group = groups_[g];
    std::vector<Bucket> buckets;
    for (size_t i = 0; i < group.params.size(); ++i) {
      const auto& p = group.params[i];
      const auto& grad = p.grad();
      if (!grad.defined()) continue;
      if (grad.is_sparse()) {
        throw std::invalid_argument("AdamW: sparse gradient for parameter " + std::to_string(i) +
                                    " of group '" + group.name + "' is not supported");
      }
      auto& s = state_[g][i];
      ++s.step;
      const auto& weight = s.master.defined() ? s.master : p;
      auto& b = bucket_for(buckets, weight);
      b.weights.push_back(weight);
      // The kernel reads the grad's raw memory in the weight's dtype and
      // layout; ATen does not make it contiguous for us (a transposed grad
      // would be read in the wrong order).
      b.grads.push_back(grad.to(weight.scalar_type()).contiguous());
      b.exp_avgs.push_back(s.exp_avg);
      b.exp_avg_sqs.push_back(s.exp_avg_sq);
      b.steps.push_back(step_tensors_[g][i]);
      if (s.master.defined()) {
        b.params_lowp.push_back(p);
        b.masters.push_back(s.master);
      }
    }
    for (auto& b : buckets) {
      // The fused kernel reads state_steps but does not advance them.
      torch::_foreach_add_(b.steps, 1);
      at::_fused_adamw_(b.weights, b.grads, b.exp_avgs, b.exp_avg_sqs, /*max_exp_avg_sqs=*/{},
                        b.steps, lr * group.lr_scale, options_.beta1, options_.beta2,
                        group.weight_decay, options_.eps, /*amsgrad=*/false, /*maximize=*/false,
                        /*grad_scale=*/std::nullopt, /*found_inf=*/std::nullopt);
      if (!b.masters.empty()) torch::_foreach_copy_(b.params_lowp, b.masters);
    }
  }
  ++steps_taken_;
}

void AdamW::zero_grad() {
  for (auto& group : groups_) {
    for (auto& p : group.params) p.mutable_grad().reset();
  }
}

}  // namespace moxie
