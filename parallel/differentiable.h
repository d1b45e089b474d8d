// Collectives as autograd functions: their backward is the adjoint collective.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "parallel/communicator.h"

namespace moxie {

// Memory reused from one call to the next when nobody else holds it any more
// (the previous result was freed, with its autograd graph); otherwise, as when
// a graph kept for a later backward still reads it, a fresh allocation that
// becomes the buffer. Never hands out memory that something else can read.
class ReusableBuffer {
 public:
  torch::Tensor get(c10::IntArrayRef sizes, const torch::TensorOptions& options);

 private:
  torch::Tensor storage_;
};

// all_to_all whose backward sends the gradient rows back the way they came.
// The result lives in `out` when given (nullptr: fresh memory).
// `comm` must outlive the backward pass.
torch::Tensor differentiable_all_to_all(Communicator& comm, const torch::Tensor& input,
                                        const std::vector<int64_t>& send_rows,
                                        const std::vector<int64_t>& recv_rows,
                                        ReusableBuffer* out = nullptr);

// differentiable_all_to_all started without waiting: the result's rows are
// only valid once *arriving is waited (until then nothing may read them, nor
// write the input). The result lives in `out` (nullptr: fresh memory).
// Backward is the blocking exchange back.
torch::Tensor differentiable_all_to_all_async(Communicator& comm, const torch::Tensor& input,
                                              const std::vector<int64_t>& send_rows,
                                              const std::vector<int64_t>& recv_rows,
                                              ReusableBuffer* out,
                                              std::shared_ptr<PendingOp>* arriving);

// Concatenation of every rank's `input` along `dim`, in rank order. Backward:
// the gradient is summed over ranks and each rank keeps its own slice (the
// adjoint of a gather is a reduce-scatter).
torch::Tensor all_gather_along(Communicator& comm, const torch::Tensor& input, int64_t dim);

// Sum over ranks of `input` (equal shapes), of which this rank keeps the r-th
// of size() equal slices along `dim`. Backward: all-gather along `dim`.
torch::Tensor reduce_scatter_along(Communicator& comm, const torch::Tensor& input, int64_t dim);

}  // namespace moxie
