// Row functions of core/'s kernels (RMSNorm, cross-entropy), shared by the
// CUDA kernels (core/model/cuda/core_kernels.cu, a warp per row) and their host
// form (core/fused.cpp, one lane per row), which the CPU tests hold to ATen.
// See core/common/lanes.cuh.
#pragma once

#include "core/common/lanes.cuh"

namespace moxie::kernels {

// RMSNorm forward of one row of D: y = w * round_T(x * rstd), rstd =
// 1/sqrt(mean(x^2) + eps) in float (Hugging Face's order: normalise in float,
// round to the input's type, then scale). Lane 0 writes rstd.
template <class T, class L>
MOXIE_HD void rmsnorm_forward_row(const L& lanes, const T* x, const T* w, T* y, float* rstd,
                                  int64_t D, float eps) {
  float ss = 0.f;
  for (int64_t c = lanes.lane(); c < D; c += L::kCount) {
    const float v = Num<T>::load(x[c]);
    ss += v * v;
  }
  ss = lanes.sum(ss);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
  for (int64_t c = lanes.lane(); c < D; c += L::kCount) {
    y[c] = Num<T>::store(Num<T>::load(w[c]) * round_to<T>(Num<T>::load(x[c]) * r));
  }
  if (lanes.lane() == 0) *rstd = r;
}

// RMSNorm backward of one row: with n = x * rstd and dn = dy * w,
// dx = rstd * (dn - n * mean(dn * n)). (The rounding of n is differentiated as
// the identity, as autograd does for a dtype cast.)
template <class T, class L>
MOXIE_HD void rmsnorm_backward_row(const L& lanes, const T* dy, const T* x, const T* w, float rstd,
                                   T* dx, int64_t D) {
  float dot = 0.f;
  for (int64_t c = lanes.lane(); c < D; c += L::kCount) {
    dot += Num<T>::load(dy[c]) * Num<T>::load(w[c]) * Num<T>::load(x[c]) * rstd;
  }
  dot = lanes.sum(dot) / static_cast<float>(D);
  for (int64_t c = lanes.lane(); c < D; c += L::kCount) {
    const float n = Num<T>::load(x[c]) * rstd;
    const float dn = Num<T>::load(dy[c]) * Num<T>::load(w[c]);
    dx[c] = Num<T>::store(rstd * (dn - n * dot));
  }
}

// The weight's gradient over rows [r0, r1) of column c: sum of dy * round_T(x * rstd).
template <class T>
MOXIE_HD float rmsnorm_dw_column(const T* dy, const T* x, const float* rstd, int64_t c, int64_t r0,
                                 int64_t r1, int64_t D) {
  float acc = 0.f;
  for (int64_t r = r0; r < r1; ++r) {
    acc += Num<T>::load(dy[r * D + c]) * round_to<T>(Num<T>::load(x[r * D + c]) * rstd[r]);
  }
  return acc;
}

// Cross-entropy of one row of V logits against `target`, read in T and
// computed in float with an online softmax (one pass: running max and sum),
// so no float copy of the logits exists. Returns lse - logit[target] (NaN for
// a target outside [0, V)); lane 0 writes the log-sum-exp.
template <class T, class L>
MOXIE_HD float cross_entropy_forward_row(const L& lanes, const T* logits, int64_t V, int64_t target,
                                         float* lse_out) {
  float m = -INFINITY, s = 0.f;
  for (int64_t c = lanes.lane(); c < V; c += L::kCount) {
    const float v = Num<T>::load(logits[c]);
    if (v == -INFINITY) continue;
    if (v > m) {
      s = s * expf(m - v) + 1.f;
      m = v;
    } else {
      s += expf(v - m);
    }
  }
  const float M = lanes.max(m);
  s = m == -INFINITY ? 0.f : s * expf(m - M);
  const float lse = M + logf(lanes.sum(s));
  if (lanes.lane() == 0) *lse_out = lse;
  if (target < 0 || target >= V) return NAN;
  return lse - Num<T>::load(logits[target]);
}

// Its backward: dlogits = g * (softmax - onehot(target)), written in T.
template <class T, class L>
MOXIE_HD void cross_entropy_backward_row(const L& lanes, const T* logits, int64_t V, int64_t target,
                                         float lse, float g, T* dlogits) {
  for (int64_t c = lanes.lane(); c < V; c += L::kCount) {
    const float p = g == 0.f ? 0.f : expf(Num<T>::load(logits[c]) - lse);
    dlogits[c] = Num<T>::store(g * (p - (c == target ? 1.f : 0.f)));
  }
}

}  // namespace moxie::kernels
