// Global-norm gradient clipping.
#include "optim/clip.h"

#include <cmath>

namespace moxie {

double grad_norm_squared(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> squares;
  for (const auto& p : params) {
    if (p.grad().defined()) squares.push_back(p.grad().to(torch::kDouble).pow(2).sum());
  }
  if (squares.empty()) return 0.0;
  return torch::stack(squares).sum().item<double>();
}

void scale_grads(const std::vector<torch::Tensor>& params, double factor) {
  torch::NoGradGuard no_grad;
  for (const auto& p : params) {
    if (p.grad().defined()) p.grad().mul_(factor);
  }
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  const double norm = std::sqrt(grad_norm_squared(params));
  if (!std::isfinite(norm)) return norm;
  if (max_norm > 0 && norm > max_norm) scale_grads(params, max_norm / (norm + 1e-6));
  return norm;
}

}  // namespace moxie
