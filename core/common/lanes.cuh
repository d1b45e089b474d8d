// Lanes: the few cross-thread operations a row kernel needs (sum, max,
// argmax over the lanes that share a row), so that each kernel's arithmetic is
// written once and compiled twice: by nvcc with a warp of 32 lanes per row,
// and by the host compiler with one lane per row. The host form is what the
// CPU build runs in its tests against ATen, so CI checks the arithmetic the
// GPU runs; only the warp reductions and the launch indexing are GPU-only.
//
// A row function takes `const L& lanes` and walks its columns as
//   for (int64_t c = lanes.lane(); c < n; c += L::kCount)
// then combines the lanes' partial results with lanes.sum / max / argmax,
// which return the combined value on every lane.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define MOXIE_HD __host__ __device__ __forceinline__
#define MOXIE_DEVICE __device__ __forceinline__
#else
#define MOXIE_HD inline
#define MOXIE_DEVICE inline
#endif

namespace moxie::kernels {

// Element conversions: every kernel computes in float. Num<T> is specialised
// for float here, for __nv_bfloat16 in the .cu files and for c10::BFloat16 in
// the host wrappers.
template <class T>
struct Num;
template <>
struct Num<float> {
  static MOXIE_HD float load(float v) { return v; }
  static MOXIE_HD float store(float v) { return v; }
};

// Rounds through T and back: what storing an intermediate in T would do.
template <class T>
MOXIE_HD float round_to(float v) {
  return Num<T>::load(Num<T>::store(v));
}

MOXIE_HD float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// One lane per row: the host form.
struct HostLanes {
  static constexpr int kCount = 1;
  int lane() const { return 0; }
  float sum(float v) const { return v; }
  float max(float v) const { return v; }
  void argmax(float&, int&) const {}
};

#ifdef __CUDACC__
// A warp per row. Every lane of the warp must call each reduction.
struct WarpLanes {
  static constexpr int kCount = 32;
  __device__ int lane() const { return threadIdx.x & 31; }
  __device__ float sum(float v) const {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
  }
  __device__ float max(float v) const {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
  }
  // The largest value and its index; ties go to the smaller index, as on the
  // host, where a lane scans its columns in increasing order.
  __device__ void argmax(float& v, int& i) const {
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, v, o);
      const int oi = __shfl_xor_sync(0xffffffffu, i, o);
      if (ov > v || (ov == v && oi < i)) {
        v = ov;
        i = oi;
      }
    }
  }
};
#endif

}  // namespace moxie::kernels
