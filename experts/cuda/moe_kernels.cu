// experts/'s CUDA kernels, then their launchers. Kernels are thin: the
// arithmetic is experts/cuda/moe_rows.cuh, shared with the host form.
#include <type_traits>

#include "core/common/bf16.cuh"
#include "core/common/cuda_check.h"
#include "experts/cuda/moe_kernels.h"

namespace moxie::kernels {
namespace {

// --- kernels ---------------------------------------------------------------

__global__ void router_forward_kernel(const float* logits, const float* bias, RouterRowOptions o,
                                      int64_t T, float* probs, float* weight, int64_t* idx,
                                      float* lse) {
  const int64_t t = warp_row();
  if (t >= T) return;
  router_forward_row(WarpLanes{}, logits + t * o.E, bias, o, probs + t * o.E, weight + t * o.K,
                     idx + t * o.K, lse + t);
}

__global__ void router_backward_kernel(const float* logits, const int64_t* idx,
                                       const float* g_weight, const float* g_probs,
                                       const float* g_lse, RouterRowOptions o, int64_t T,
                                       float* dl) {
  const int64_t t = warp_row();
  if (t >= T) return;
  router_backward_row(
      WarpLanes{}, logits + t * o.E, idx + t * o.K, g_weight ? g_weight + t * o.K : nullptr,
      g_probs ? g_probs + t * o.E : nullptr, g_lse ? g_lse[t] : 0.f, o, dl + t * o.E);
}

template <class T>
__global__ void gather_sum_kernel(const T* rows, const int64_t* pos, const float* w, T* out,
                                  int64_t n_tokens, int K, int64_t D) {
  const int64_t t = warp_row();
  if (t >= n_tokens) return;
  gather_sum_row(WarpLanes{}, rows, D, pos + t * K, K, w, out + t * D);
}

template <class T>
__global__ void scale_rows_kernel(const T* in, const int64_t* src, const float* w, T* out,
                                  const T* dot_with, float* dot, int64_t N, int64_t D) {
  const int64_t n = warp_row();
  if (n >= N) return;
  scale_row(WarpLanes{}, in + src[n] * D, D, w ? w[n] : 1.f, out + n * D,
            dot_with ? dot_with + n * D : nullptr, dot ? dot + n : nullptr);
}

template <class T>
__global__ void swiglu_forward_kernel(const T* g, const T* u, int64_t stride, T* a, int64_t N,
                                      int64_t H) {
  const int64_t total = N * H;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / H, c = i - r * H;
    a[i] = Num<T>::store(
        swiglu_forward(Num<T>::load(g[r * stride + c]), Num<T>::load(u[r * stride + c])));
  }
}

template <class T>
__global__ void swiglu_backward_kernel(const T* g, const T* u, int64_t stride, const T* da, T* dg,
                                       T* du, int64_t N, int64_t H) {
  const int64_t total = N * H;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / H, c = i - r * H;
    float dgv, duv;
    swiglu_backward(Num<T>::load(g[r * stride + c]), Num<T>::load(u[r * stride + c]),
                    Num<T>::load(da[i]), dgv, duv);
    dg[r * stride + c] = Num<T>::store(dgv);
    du[r * stride + c] = Num<T>::store(duv);
  }
}

unsigned int elementwise_blocks(int64_t total) {
  const int64_t blocks = (total + 255) / 256;
  return static_cast<unsigned int>(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

}  // namespace

// --- launchers -------------------------------------------------------------

void launch_router_forward(const float* logits, const float* bias, const RouterRowOptions& o,
                           int64_t T, float* probs, float* weight, int64_t* idx, float* lse,
                           cudaStream_t stream) {
  if (T == 0) return;
  router_forward_kernel<<<row_blocks(T), 32 * kWarps, 0, stream>>>(logits, bias, o, T, probs,
                                                                   weight, idx, lse);
  MOXIE_LAUNCH_CHECK("router_forward_kernel");
}

void launch_router_backward(const float* logits, const int64_t* idx, const float* g_weight,
                            const float* g_probs, const float* g_lse, const RouterRowOptions& o,
                            int64_t T, float* dlogits, cudaStream_t stream) {
  if (T == 0) return;
  router_backward_kernel<<<row_blocks(T), 32 * kWarps, 0, stream>>>(logits, idx, g_weight, g_probs,
                                                                    g_lse, o, T, dlogits);
  MOXIE_LAUNCH_CHECK("router_backward_kernel");
}

void launch_gather_sum(DType dtype, const void* rows, const int64_t* pos, const float* w, void* out,
                       int64_t T, int K, int64_t D, cudaStream_t stream) {
  if (T == 0) return;
  by_dtype(dtype, [&](auto* tag) {
    using E = std::remove_pointer_t<decltype(tag)>;
    gather_sum_kernel<E><<<row_blocks(T), 32 * kWarps, 0, stream>>>(
        static_cast<const E*>(rows), pos, w, static_cast<E*>(out), T, K, D);
  });
  MOXIE_LAUNCH_CHECK("gather_sum_kernel");
}

void launch_scale_rows(DType dtype, const void* in, const int64_t* src, const float* w, void* out,
                       const void* dot_with, float* dot, int64_t N, int64_t D,
                       cudaStream_t stream) {
  if (N == 0) return;
  by_dtype(dtype, [&](auto* tag) {
    using E = std::remove_pointer_t<decltype(tag)>;
    scale_rows_kernel<E><<<row_blocks(N), 32 * kWarps, 0, stream>>>(
        static_cast<const E*>(in), src, w, static_cast<E*>(out), static_cast<const E*>(dot_with),
        dot, N, D);
  });
  MOXIE_LAUNCH_CHECK("scale_rows_kernel");
}

void launch_swiglu_forward(DType dtype, const void* g, const void* u, int64_t stride, void* a,
                           int64_t N, int64_t H, cudaStream_t stream) {
  if (N * H == 0) return;
  by_dtype(dtype, [&](auto* tag) {
    using E = std::remove_pointer_t<decltype(tag)>;
    swiglu_forward_kernel<E><<<elementwise_blocks(N * H), 256, 0, stream>>>(
        static_cast<const E*>(g), static_cast<const E*>(u), stride, static_cast<E*>(a), N, H);
  });
  MOXIE_LAUNCH_CHECK("swiglu_forward_kernel");
}

void launch_swiglu_backward(DType dtype, const void* g, const void* u, int64_t stride,
                            const void* da, void* dg, void* du, int64_t N, int64_t H,
                            cudaStream_t stream) {
  if (N * H == 0) return;
  by_dtype(dtype, [&](auto* tag) {
    using E = std::remove_pointer_t<decltype(tag)>;
    swiglu_backward_kernel<E><<<elementwise_blocks(N * H), 256, 0, stream>>>(
        static_cast<const E*>(g), static_cast<const E*>(u), stride, static_cast<const E*>(da),
        static_cast<E*>(dg), static_cast<E*>(du), N, H);
  });
  MOXIE_LAUNCH_CHECK("swiglu_backward_kernel");
}

}  // namespace moxie::kernels
