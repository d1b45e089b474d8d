// Collectives as autograd functions: their backward is the adjoint collective.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "parallel/communicator.h"

namespace moxie {

// all_to_all whose backward sends the gradient rows back the way they came.
// `comm` must outlive the backward pass.
torch::Tensor differentiable_all_to_all(Communicator& comm, const torch::Tensor& input,
                                        const std::vector<int64_t>& send_rows,
                                        const std::vector<int64_t>& recv_rows);

// Concatenation of every rank's `input` along `dim`, in rank order. Backward:
// the gradient is summed over ranks and each rank keeps its own slice (the
// adjoint of a gather is a reduce-scatter).
torch::Tensor all_gather_along(Communicator& comm, const torch::Tensor& input, int64_t dim);

// Sum over ranks of `input` (equal shapes), of which this rank keeps the r-th
// of size() equal slices along `dim`. Backward: all-gather along `dim`.
torch::Tensor reduce_scatter_along(Communicator& comm, const torch::Tensor& input, int64_t dim);

}  // namespace moxie
