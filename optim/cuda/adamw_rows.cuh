// The multi-tensor AdamW update, element by element, shared by the CUDA
// kernel (optim/cuda/adamw_kernels.cu) and its host form (optim/adamw.cpp),
// and the table both walk: one entry per tensor, one chunk per block.
#pragma once

#include "core/common/lanes.cuh"

namespace moxie::kernels {

// One parameter's update. `weight` is the float32 weight updated in place:
// the parameter itself, or its fp32 master copy, in which case `lowp` is the
// bfloat16 parameter written from it in the same pass. The grad is read in
// its own dtype (float32 or bfloat16), never copied.
struct AdamWTensor {
  float* weight = nullptr;
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
  const void* grad = nullptr;
  void* lowp = nullptr;
  int64_t numel = 0;
  int32_t grad_bf16 = 0;
  // PyTorch's AdamW with this parameter's step count folded in:
  // decay = 1 - lr * weight_decay, step_size = lr / (1 - beta1^step),
  // bc2_sqrt = sqrt(1 - beta2^step).
  float decay = 1.f, step_size = 0.f, bc2_sqrt = 1.f;
};

// Elements per chunk: one CUDA block each.
constexpr int64_t kAdamWChunkElements = 65536;

struct AdamWChunk {
  int64_t tensor = 0;
  int64_t start = 0;
};

struct AdamWHyper {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};

// PyTorch's formula (torch.optim.AdamW, as its fused kernels compute it):
//   w *= decay; m = lerp(m, g, 1 - beta1); v = beta2 v + (1 - beta2) g^2;
//   w -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
MOXIE_HD void adamw_element(float& w, float& m, float& v, float g, const AdamWTensor& t,
                            const AdamWHyper& h) {
  w *= t.decay;
  m += (1.f - h.beta1) * (g - m);
  v = h.beta2 * v + (1.f - h.beta2) * g * g;
  w -= t.step_size * m / (sqrtf(v) / t.bc2_sqrt + h.eps);
}

}  // namespace moxie::kernels
