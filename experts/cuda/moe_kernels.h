// Launchers of experts/'s CUDA kernels: the fused router, the token
// permutation with routing weights (forward and backward), SwiGLU (forward
// and backward). Device pointers of contiguous row-major tensors unless a
// stride is given; each queues on `stream`, checks the launch (throws
// std::runtime_error naming the kernel) and returns without waiting. The row
// arithmetic is in experts/cuda/moe_rows.cuh.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/common/dtype.h"
#include "experts/cuda/moe_rows.cuh"

namespace moxie::kernels {

// logits: float [T, E]; bias: float [E] or null. Writes probs [T, E],
// weight [T, K], idx int64 [T, K], lse [T].
void launch_router_forward(const float* logits, const float* bias, const RouterRowOptions& o,
                           int64_t T, float* probs, float* weight, int64_t* idx, float* lse,
                           cudaStream_t stream);
// g_weight [T, K], g_probs [T, E], g_lse [T]: each may be null (no gradient).
void launch_router_backward(const float* logits, const int64_t* idx, const float* g_weight,
                            const float* g_probs, const float* g_lse, const RouterRowOptions& o,
                            int64_t T, float* dlogits, cudaStream_t stream);

// out[t] = sum_k w[pos[t, k]] * rows[pos[t, k]] over kept assignments (pos >= 0);
// w: float [N] or null. rows [N, D], pos int64 [T, K], out [T, D].
void launch_gather_sum(DType dtype, const void* rows, const int64_t* pos, const float* w, void* out,
                       int64_t T, int K, int64_t D, cudaStream_t stream);
// out[n] = w[n] * in[src[n]] (w null: 1); with dot_with ([N, D]) also
// dot[n] = <in[src[n]], dot_with[n]>. in [T, D], src int64 [N], out [N, D].
void launch_scale_rows(DType dtype, const void* in, const int64_t* src, const float* w, void* out,
                       const void* dot_with, float* dot, int64_t N, int64_t D, cudaStream_t stream);

// a[N, H] = silu(g) * u, where row i of g starts at g + i * g_stride (u likewise).
void launch_swiglu_forward(DType dtype, const void* g, const void* u, int64_t stride, void* a,
                           int64_t N, int64_t H, cudaStream_t stream);
// dg, du (same layout as g, u) from da [N, H].
void launch_swiglu_backward(DType dtype, const void* g, const void* u, int64_t stride,
                            const void* da, void* dg, void* du, int64_t N, int64_t H,
                            cudaStream_t stream);

}  // namespace moxie::kernels
