// core/'s CUDA kernels, then their launchers. Kernels are thin: the row
// arithmetic is core/model/cuda/core_rows.cuh, shared with the host form.
#include <algorithm>
#include <type_traits>

#include "core/common/bf16.cuh"
#include "core/common/cuda_check.h"
#include "core/model/cuda/core_kernels.h"
#include "core/model/cuda/core_rows.cuh"

namespace moxie::kernels {
namespace {

// --- kernels ---------------------------------------------------------------

template <class T>
__global__ void rmsnorm_forward_kernel(const T* x, const T* w, T* y, float* rstd, int64_t N,
                                       int64_t D, float eps) {
  const int64_t r = warp_row();
  if (r >= N) return;
  rmsnorm_forward_row(WarpLanes{}, x + r * D, w, y + r * D, rstd + r, D, eps);
}

template <class T>
__global__ void rmsnorm_backward_kernel(const T* dy, const T* x, const T* w, const float* rstd,
                                        T* dx, int64_t N, int64_t D) {
  const int64_t r = warp_row();
  if (r >= N) return;
  rmsnorm_backward_row(WarpLanes{}, dy + r * D, x + r * D, w, rstd[r], dx + r * D, D);
}

// Thread per (column, row group): consecutive threads read consecutive
// columns of a row, so the loads are coalesced.
template <class T>
__global__ void rmsnorm_dw_kernel(const T* dy, const T* x, const float* rstd, float* partial,
                                  int64_t N, int64_t D, int64_t rows_per_group) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t g = blockIdx.y;
  if (c >= D) return;
  const int64_t r0 = g * rows_per_group;
  const int64_t r1 = r0 + rows_per_group < N ? r0 + rows_per_group : N;
  partial[g * D + c] = rmsnorm_dw_column(dy, x, rstd, c, r0, r1, D);
}

template <class T>
__global__ void cross_entropy_forward_kernel(const T* logits, const int64_t* targets, float* loss,
                                             float* lse, int64_t N, int64_t V) {
  const int64_t r = warp_row();
  if (r >= N) return;
  const float l = cross_entropy_forward_row(WarpLanes{}, logits + r * V, V, targets[r], lse + r);
  if ((threadIdx.x & 31) == 0) loss[r] = l;
}

template <class T>
__global__ void cross_entropy_backward_kernel(const T* logits, const int64_t* targets,
                                              const float* lse, const float* grad, T* dlogits,
                                              int64_t N, int64_t V) {
  const int64_t r = warp_row();
  if (r >= N) return;
  cross_entropy_backward_row(WarpLanes{}, logits + r * V, V, targets[r], lse[r], grad[r],
                             dlogits + r * V);
}

}  // namespace

// --- launchers -------------------------------------------------------------

void launch_rmsnorm_forward(DType dtype, const void* x, const void* w, void* y, float* rstd,
                            int64_t N, int64_t D, float eps, cudaStream_t stream) {
  if (N == 0) return;
  by_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    rmsnorm_forward_kernel<T><<<row_blocks(N), 32 * kWarps, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(w), static_cast<T*>(y), rstd, N, D, eps);
  });
  MOXIE_LAUNCH_CHECK("rmsnorm_forward_kernel");
}

int64_t rmsnorm_dw_rows_per_group(int64_t N) { return std::max<int64_t>(64, (N + 255) / 256); }
int64_t rmsnorm_dw_groups(int64_t N) {
  const int64_t rows = rmsnorm_dw_rows_per_group(N);
  return std::max<int64_t>(1, (N + rows - 1) / rows);
}

void launch_rmsnorm_backward(DType dtype, const void* dy, const void* x, const void* w,
                             const float* rstd, void* dx, float* dw_partial, int64_t N, int64_t D,
                             cudaStream_t stream) {
  const int64_t groups = rmsnorm_dw_groups(N);
  if (N == 0) {
    MOXIE_CUDA_CHECK(cudaMemsetAsync(dw_partial, 0, sizeof(float) * groups * D, stream));
    return;
  }
  by_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    rmsnorm_backward_kernel<T><<<row_blocks(N), 32 * kWarps, 0, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(w), rstd,
        static_cast<T*>(dx), N, D);
    MOXIE_LAUNCH_CHECK("rmsnorm_backward_kernel");
    const dim3 grid(static_cast<unsigned int>((D + 255) / 256), static_cast<unsigned int>(groups));
    rmsnorm_dw_kernel<T><<<grid, 256, 0, stream>>>(static_cast<const T*>(dy),
                                                   static_cast<const T*>(x), rstd, dw_partial, N, D,
                                                   rmsnorm_dw_rows_per_group(N));
    MOXIE_LAUNCH_CHECK("rmsnorm_dw_kernel");
  });
}

void launch_cross_entropy_forward(DType dtype, const void* logits, const int64_t* targets,
                                  float* loss, float* lse, int64_t N, int64_t V,
                                  cudaStream_t stream) {
  if (N == 0) return;
  by_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    cross_entropy_forward_kernel<T><<<row_blocks(N), 32 * kWarps, 0, stream>>>(
        static_cast<const T*>(logits), targets, loss, lse, N, V);
  });
  MOXIE_LAUNCH_CHECK("cross_entropy_forward_kernel");
}

void launch_cross_entropy_backward(DType dtype, const void* logits, const int64_t* targets,
                                   const float* lse, const float* grad, void* dlogits, int64_t N,
                                   int64_t V, cudaStream_t stream) {
  if (N == 0) return;
  by_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    cross_entropy_backward_kernel<T><<<row_blocks(N), 32 * kWarps, 0, stream>>>(
        static_cast<const T*>(logits), targets, lse, grad, static_cast<T*>(dlogits), N, V);
  });
  MOXIE_LAUNCH_CHECK("cross_entropy_backward_kernel");
}

}  // namespace moxie::kernels
