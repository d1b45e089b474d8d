// Fused RMSNorm and cross-entropy: autograd ops backed by core/cuda's kernels
// on CUDA tensors. On CPU tensors they run the kernels' host form (the same
// row arithmetic, one row at a time, single-threaded): that is what the CPU
// tests compare with ATen, not a path training takes (core/layers.cpp uses
// ATen on CPU). Inputs are float32 or bfloat16.
#pragma once

#include <torch/torch.h>

namespace moxie {

// x: [..., D], weight: [D], both of one dtype. Returns weight * round(x * rstd)
// as RMSNormImpl::forward does; differentiable in x and weight.
torch::Tensor fused_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// Per-row cross-entropy (natural log) of logits [N, V] against int64
// targets [N]: float32 [N], NaN for a target outside [0, V). The logits stay
// in their dtype; the softmax is computed in float registers, so no float32
// copy of [N, V] is made, forward or backward. Differentiable in the logits.
torch::Tensor fused_cross_entropy(const torch::Tensor& logits_NV, const torch::Tensor& targets_N);

// Whether fused_rms_norm / fused_cross_entropy take these tensors on this
// build (CUDA, float32 or bfloat16, MOXIE_FUSED_KERNELS not 0).
bool fused_rms_norm_applies(const torch::Tensor& x, const torch::Tensor& weight);
bool fused_cross_entropy_applies(const torch::Tensor& logits);

}  // namespace moxie
