// Fused MoE ops: the router, the token permutation with routing weights and
// SwiGLU, as autograd ops backed by experts/cuda's kernels on CUDA tensors.
// On CPU tensors they run the kernels' host form (the same arithmetic, one
// row at a time): what the CPU tests compare with the ATen path, not a path
// training takes. Data tensors are float32 or bfloat16.
#pragma once

#include <torch/torch.h>

namespace moxie {

struct FusedRouting {
  torch::Tensor weight_TK;  // float32 [T, K], differentiable
  torch::Tensor idx_TK;     // int64 [T, K], experts in decreasing score order
  torch::Tensor probs_TE;   // float32 [T, E], rows sum to one (balance loss), differentiable
  torch::Tensor lse_T;      // float32 [T], logsumexp of the logits (z-loss), differentiable
};

// One pass over float32 logits [T, E]: scores (softmax, or sigmoid when
// `sigmoid`), top-k selection by score + bias_E (undefined: no bias;
// selection only), combine weights (renormalised to sum to one if asked),
// probabilities and log-sum-exp. K <= kFusedRouteMaxTopK. Differentiable in the logits.
constexpr int64_t kFusedRouteMaxTopK = 16;  // experts/cuda/moe_rows.cuh kMaxTopK
FusedRouting fused_route(const torch::Tensor& logits_TE, const torch::Tensor& bias_E, int64_t K,
                         bool sigmoid, bool renormalize);

// pos_TK: int64 [T, K], the permuted row of each (token, choice) assignment,
// -1 where capacity dropped it; src_N: int64 [N], each row's token.
// Permute: [T, D] -> [N, D], row n = x[src[n]]; backward sums each token's rows.
torch::Tensor fused_permute(const torch::Tensor& x_TD, const torch::Tensor& src_N,
                            const torch::Tensor& pos_TK);
// Unpermute: [N, D] -> [T, D], token t = sum of weight_N[n] * y[n] over its
// kept rows, accumulated in float32; differentiable in y and weight_N (float32 [N]).
torch::Tensor fused_unpermute(const torch::Tensor& y_ND, const torch::Tensor& weight_N,
                              const torch::Tensor& src_N, const torch::Tensor& pos_TK);

// silu(gate) * up. Packed: h [N, 2H], gate = h[:, :H], up = h[:, H:] (one
// grouped GEMM makes both); or two [..., H] tensors of one shape.
torch::Tensor fused_swiglu_packed(const torch::Tensor& h_N2H);
torch::Tensor fused_swiglu(const torch::Tensor& gate, const torch::Tensor& up);

// Whether the fused ops take tensors like `t` on this build (CUDA, float32
// or bfloat16, MOXIE_FUSED_KERNELS not 0).
bool fused_moe_applies(const torch::Tensor& t);

}  // namespace moxie
