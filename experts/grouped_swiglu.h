// Grouped SwiGLU over contiguous expert segments: the experts' whole compute as
// one autograd op, so each expert's weight gradient is written straight into
// its slice instead of autograd summing one full-size gradient per expert.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace moxie {

// x_ND: rows grouped by expert, counts[e] rows for expert e (sum = N).
// w13_EFD: [E, 2H, D], rows [0, H) the gate projection (HF w1), [H, 2H) the up
// projection (HF w3). w2_EDH: [E, D, H] the down projection (HF w2).
// Returns [N, D]: for rows of expert e, w2[e] (silu(x w1[e]^T) * (x w3[e]^T)).
torch::Tensor grouped_swiglu(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                             const torch::Tensor& w2_EDH, const std::vector<int64_t>& counts);

// The same computed naively, one token at a time with autograd: the reference
// the tests hold the grouped op to.
torch::Tensor grouped_swiglu_reference(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                                       const torch::Tensor& w2_EDH,
                                       const std::vector<int64_t>& counts);

}  // namespace moxie
