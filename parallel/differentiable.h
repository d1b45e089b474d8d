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

}  // namespace moxie
