// What the host forms of moxie's kernels need beside core/common/lanes.cuh:
// bfloat16 as c10::BFloat16, the switch between fused kernels and ATen, and
// the current CUDA stream. For the torch-side wrappers (core/fused.cpp,
// experts/fused.cpp, optim/adamw.cpp), never for .cu files.
#pragma once

#include <c10/util/BFloat16.h>
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>

#include "core/common/dtype.h"
#include "core/common/env.h"
#include "core/common/lanes.cuh"

#ifdef MOXIE_HAVE_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace moxie::kernels {

template <>
struct Num<c10::BFloat16> {
  static float load(c10::BFloat16 v) { return static_cast<float>(v); }
  static c10::BFloat16 store(float v) { return c10::BFloat16(v); }  // round to nearest even
};

// Whether a CUDA tensor goes through moxie's fused kernels (the default) or
// through the composed ATen ops they replace: MOXIE_FUSED_KERNELS=0 selects
// ATen, for benchmarks and for bisecting a numerical difference. Read once;
// CPU tensors always take the ATen path (the kernels' host forms are
// single-threaded references for the tests).
inline bool fused_kernels_enabled() {
  static const bool on = [] {
    const char* v = std::getenv(env::kFusedKernels);
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}
inline bool use_fused(const torch::Tensor& t) {
#ifdef MOXIE_HAVE_CUDA
  return t.is_cuda() && fused_kernels_enabled();
#else
  (void)t;
  return false;
#endif
}

// The kernels' element types: float32 and bfloat16.
inline bool kernel_dtype(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kBFloat16;
}
inline DType dtype_of(const torch::Tensor& t) {
  TORCH_CHECK(kernel_dtype(t), "moxie kernels take float32 or bfloat16, not ", t.scalar_type());
  return t.scalar_type() == torch::kBFloat16 ? DType::kBFloat16 : DType::kFloat32;
}

// Calls f with a null pointer of the host element type of `t`.
template <class F>
void host_by_dtype(const torch::Tensor& t, F&& f) {
  if (t.scalar_type() == torch::kBFloat16) {
    f(static_cast<c10::BFloat16*>(nullptr));
  } else {
    TORCH_CHECK(t.scalar_type() == torch::kFloat, "moxie kernels take float32 or bfloat16, not ",
                t.scalar_type());
    f(static_cast<float*>(nullptr));
  }
}

#ifdef MOXIE_HAVE_CUDA
inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }
#endif

}  // namespace moxie::kernels
