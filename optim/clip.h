// Global gradient-norm clipping. The norm pieces are separate so that the
// distributed trainer can sum squared norms across ranks before scaling.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace moxie {

// Sum of squared gradient entries (any float dtype), accumulated in float64.
// Undefined grads are skipped; grads must share one device.
double grad_norm_squared(const std::vector<torch::Tensor>& params);
// Multiplies every defined gradient by `factor` in place.
void scale_grads(const std::vector<torch::Tensor>& params, double factor);
// Returns the pre-clip global L2 norm; scales the grads by max_norm / (norm + 1e-6)
// when norm > max_norm > 0. A non-finite norm is returned with the grads untouched.
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace moxie
