// Launchers of core/'s CUDA kernels: RMSNorm forward and backward,
// cross-entropy forward and backward. Each takes device pointers of
// contiguous row-major tensors, queues its kernels on `stream`, checks the
// launch (throws std::runtime_error naming the kernel) and returns without
// waiting. The row arithmetic is in core/model/cuda/core_rows.cuh.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/common/dtype.h"

namespace moxie::kernels {

// x, w, y: [N, D] / [D] / [N, D] of `dtype`; rstd: float [N] (saved for backward).
void launch_rmsnorm_forward(DType dtype, const void* x, const void* w, void* y, float* rstd,
                            int64_t N, int64_t D, float eps, cudaStream_t stream);
// dx: [N, D] of `dtype`; dw_partial: float [G, D] with G = rmsnorm_dw_groups(N):
// the weight's gradient summed over each group of rows (the caller sums over G).
void launch_rmsnorm_backward(DType dtype, const void* dy, const void* x, const void* w,
                             const float* rstd, void* dx, float* dw_partial, int64_t N, int64_t D,
                             cudaStream_t stream);
int64_t rmsnorm_dw_groups(int64_t N);
int64_t rmsnorm_dw_rows_per_group(int64_t N);

// logits: [N, V] of `dtype`; targets: int64 [N]; loss, lse: float [N].
void launch_cross_entropy_forward(DType dtype, const void* logits, const int64_t* targets,
                                  float* loss, float* lse, int64_t N, int64_t V,
                                  cudaStream_t stream);
// grad: float [N], the loss's gradient per row; dlogits: [N, V] of `dtype`.
void launch_cross_entropy_backward(DType dtype, const void* logits, const int64_t* targets,
                                   const float* lse, const float* grad, void* dlogits, int64_t N,
                                   int64_t V, cudaStream_t stream);

}  // namespace moxie::kernels
