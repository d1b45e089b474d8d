// The multi-tensor AdamW kernel, then its launcher.
#include "core/common/bf16.cuh"
#include "core/common/cuda_check.h"
#include "optim/cuda/adamw_kernels.h"

namespace moxie::kernels {
namespace {

__global__ void adamw_kernel(const AdamWTensor* tensors, const AdamWChunk* chunks, AdamWHyper h) {
  const AdamWChunk chunk = chunks[blockIdx.x];
  const AdamWTensor t = tensors[chunk.tensor];
  const int64_t end =
      chunk.start + kAdamWChunkElements < t.numel ? chunk.start + kAdamWChunkElements : t.numel;
  for (int64_t i = chunk.start + threadIdx.x; i < end; i += blockDim.x) {
    const float g = t.grad_bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(t.grad)[i])
                                : static_cast<const float*>(t.grad)[i];
    float w = t.weight[i], m = t.exp_avg[i], v = t.exp_avg_sq[i];
    adamw_element(w, m, v, g, t, h);
    t.weight[i] = w;
    t.exp_avg[i] = m;
    t.exp_avg_sq[i] = v;
    if (t.lowp) static_cast<__nv_bfloat16*>(t.lowp)[i] = __float2bfloat16(w);
  }
}

}  // namespace

void launch_adamw(const AdamWTensor* tensors, const AdamWChunk* chunks, int64_t n_chunks,
                  AdamWHyper hyper, cudaStream_t stream) {
  // Grid x holds up to 2^31 - 1 blocks: 1.4e14 elements at 64 Ki per chunk.
  if (n_chunks == 0) return;
  adamw_kernel<<<static_cast<unsigned int>(n_chunks), 512, 0, stream>>>(tensors, chunks, hyper);
  MOXIE_LAUNCH_CHECK("adamw_kernel");
}

}  // namespace moxie::kernels
