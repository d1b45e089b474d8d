// Global-norm gradient clipping.
#include "optim/clip.h"

#include <cmath>

namespace moxie {

namespace {
std::vector<torch::Tensor> defined_grads(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  return grads;
}
}  // namespace

double grad_norm_squared(const std::vector<torch::Tensor>& params) {
  const auto grads = defined_grads(params);
  if (grads.empty()) return 0.0;
  // Accumulated in float64 within each tensor too: ATen's float32 CPU norm
  // drifts by ~1e-4 relative over a few million entries.
  auto norms = torch::stack(torch::_foreach_norm(grads, 2, torch::kDouble));
  return norms.square().sum().item<double>();
}

void scale_grads(const std::vector<torch::Tensor>& params, double factor) {
  torch::NoGradGuard no_grad;
  auto grads = defined_grads(params);
  if (!grads.empty()) torch::_foreach_mul_(grads, factor);
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  const double norm = std::sqrt(grad_norm_squared(params));
  if (!std::isfinite(norm)) return norm;
  if (max_norm > 0 && norm > max_norm) scale_grads(params, max_norm / (norm + 1e-6));
  return norm;
}

}  // namespace moxie
