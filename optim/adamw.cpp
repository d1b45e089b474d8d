// AdamW step: the math of torch.optim.AdamW, elementwise fused per parameter.
#include "optim/adamw.h"

#include <cmath>

namespace moxie {
namespace {
bool full_precision(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kDouble;
}
}  // namespace

AdamW::AdamW(std::vector<ParamGroup> groups, const OptimOptions& options)
    : groups_(std::move(groups)), options_(options) {
  torch::NoGradGuard no_grad;
  for (const auto& group : groups_) {
    std::vector<ParamState> states;
    for (const auto& p : group.params) {
      ParamState s;
      if (!full_precision(p)) s.master = p.detach().to(torch::kFloat).clone();
      const auto& like = s.master.defined() ? s.master : p;
      s.exp_avg = torch::zeros_like(like);
      s.exp_avg_sq = torch::zeros_like(like);
      states.push_back(std::move(s));
    }
    state_.push_back(std::move(states));
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  const double b1 = options_.beta1, b2 = options_.beta2, eps = options_.eps;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const auto& group = groups_[g];
    const double group_lr = lr * group.lr_scale;
    for (size_t i = 0; i < group.params.size(); ++i) {
      const auto& p = group.params[i];
      if (!p.grad().defined()) continue;
      auto& s = state_[g][i];
      ++s.step;
      auto w = s.master.defined() ? s.master : p.detach();
      auto grad = p.grad().to(w.scalar_type());
      const double bias1 = 1.0 - std::pow(b1, static_cast<double>(s.step));
      const double bias2 = 1.0 - std::pow(b2, static_cast<double>(s.step));
      if (group.weight_decay != 0) w.mul_(1.0 - group_lr * group.weight_decay);
      s.exp_avg.lerp_(grad, 1.0 - b1);
      s.exp_avg_sq.mul_(b2).addcmul_(grad, grad, 1.0 - b2);
      // p -= lr/bias1 * m / (sqrt(v)/sqrt(bias2) + eps)
      auto denom = (s.exp_avg_sq.sqrt() / std::sqrt(bias2)).add_(eps);
      w.addcdiv_(s.exp_avg, denom, -group_lr / bias1);
      if (s.master.defined()) p.detach().copy_(s.master);
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
