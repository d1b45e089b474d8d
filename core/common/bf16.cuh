// Num<__nv_bfloat16>: bfloat16 loads and stores (round to nearest even, as
// c10::BFloat16), for the .cu files.
#pragma once

#include <cuda_bf16.h>

#include "core/common/dtype.h"
#include "core/common/lanes.cuh"

namespace moxie::kernels {

template <>
struct Num<__nv_bfloat16> {
  static __host__ __device__ __forceinline__ float load(__nv_bfloat16 v) {
    return __bfloat162float(v);
  }
  static __host__ __device__ __forceinline__ __nv_bfloat16 store(float v) {
    return __float2bfloat16(v);
  }
};

// Calls f with a null pointer of the element type `dtype` names.
template <class F>
void by_dtype(DType dtype, F&& f) {
  if (dtype == DType::kBFloat16) {
    f(static_cast<__nv_bfloat16*>(nullptr));
  } else {
    f(static_cast<float*>(nullptr));
  }
}

// A warp per row, kWarps rows per block of 32 * kWarps threads.
constexpr int kWarps = 8;
__device__ __forceinline__ int64_t warp_row() {
  return static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
}
inline unsigned int row_blocks(int64_t rows) {
  return static_cast<unsigned int>((rows + kWarps - 1) / kWarps);
}

}  // namespace moxie::kernels
