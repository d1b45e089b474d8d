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

// The same computed naively, one token at a time with autograd: the reference
// the tests hold the grouped op to.
torch::Tensor grouped_swiglu_reference(const torch::Tensor& x_ND, const torch::Tensor& w13_EFD,
                                       const torch::Tensor& w2_EDH,
                                       const std::vector<int64_t>& counts,
                                       const std::vector<int64_t>& segment_experts = {});

}  // namespace moxie
