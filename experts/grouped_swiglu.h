// Grouped SwiGLU over contiguous expert segments: the experts' whole compute as
// one autograd op, so each expert's weight gradient is written straight into
// its slice instead of autograd summing one full-size gradient per expert.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace moxie {

// x_ND: consecutive row segments, counts[i] rows each (sum = N). Segment i
// belongs to expert segment_experts[i]; with segment_experts empty, segment i
// is expert i (counts.size() == E). Several segments may share an expert (rows
// received from several ranks) and an expert may have none.
// w13_EFD: [E, 2H, D], rows [0, H) the gate projection (HF w1), [H, 2H) the up
// projection (HF w3). w2_EDH: [E, D, H] the down projection (HF w2).
// Returns [N, D]: for rows of expert e, w2[e] (silu(x w1[e]^T) * (x w3[e]^T)).
torch::Tensor grouped_swiglu(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                             const torch::Tensor& w2_EDH, const std::vector<int64_t>& counts,
                             const std::vector<int64_t>& segment_experts = {});

// The same as grouped GEMMs (at::_grouped_mm, CUTLASS on Hopper): x @ w13^T
// for all experts in one call, SwiGLU (fused on CUDA, experts/fused.h), then
// @ w2^T in another; rows are regrouped by expert first when an expert has
// several segments (expert parallelism), and put back after. Needs
// bfloat16 (float32 works on CPU only) and D, H multiples of 8 (16-byte
// strides). grouped_swiglu takes this path itself where grouped_gemm_applies.
torch::Tensor grouped_swiglu_gemm(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                                  const torch::Tensor& w2_EDH, const std::vector<int64_t>& counts,
                                  const std::vector<int64_t>& segment_experts = {});
// CUDA, bfloat16, D and H multiples of 8, MOXIE_FUSED_KERNELS not 0.
bool grouped_gemm_applies(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                          const torch::Tensor& w2_EDH);
// The CPU path: one matmul per segment, hand-written backward. grouped_swiglu
// takes it where grouped_gemm_applies is false.
torch::Tensor grouped_swiglu_loop(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                                  const torch::Tensor& w2_EDH, const std::vector<int64_t>& counts,
                                  const std::vector<int64_t>& segment_experts = {});

// The same computed naively, one token at a time with autograd: the reference
// the tests hold the grouped op to.
torch::Tensor grouped_swiglu_reference(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                                       const torch::Tensor& w2_EDH,
                                       const std::vector<int64_t>& counts,
                                       const std::vector<int64_t>& segment_experts = {});

}  // namespace moxie
