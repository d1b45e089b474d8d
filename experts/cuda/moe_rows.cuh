// Row functions of experts/'s kernels (router, token permutation, SwiGLU),
// shared by the CUDA kernels (experts/cuda/moe_kernels.cu) and their host
// form (experts/fused.cpp), which the CPU tests hold to the ATen path. See
// core/common/lanes.cuh.
#pragma once

#include <climits>

#include "core/common/lanes.cuh"

namespace moxie::kernels {

constexpr int kMaxTopK = 16;

struct RouterRowOptions {
  int64_t E = 0;
  int K = 0;
  bool sigmoid = false;     // else softmax
  bool renormalize = true;  // top-k weights sum to one
};

// Per-row softmax statistics: max and sum of exp(l - max).
template <class L>
MOXIE_HD void softmax_stats(const L& lanes, const float* l, int64_t E, float& M, float& S) {
  float m = -INFINITY;
  for (int64_t c = lanes.lane(); c < E; c += L::kCount) m = fmaxf(m, l[c]);
  M = lanes.max(m);
  float s = 0.f;
  for (int64_t c = lanes.lane(); c < E; c += L::kCount) s += expf(l[c] - M);
  S = lanes.sum(s);
}

// The router's score of expert c: softmax(l)_c or sigmoid(l_c).
MOXIE_HD float router_score(const float* l, int64_t c, bool sigmoid, float M, float S) {
  return sigmoid ? sigmoidf_(l[c]) : expf(l[c] - M) / S;
}

// One token's routing from its float logits l[E]: probs[E] (rows sum to one:
// the softmax, or the sigmoid scores normalised), the top-K experts by score
// (+ bias[E] when given: selection only) in decreasing order, their weights
// (scores, renormalised to sum to one if asked) and the log-sum-exp of l
// (z-loss). Lane 0 writes weight_K, idx_K and lse.
template <class L>
MOXIE_HD void router_forward_row(const L& lanes, const float* l, const float* bias,
                                 const RouterRowOptions& o, float* probs, float* weight_K,
                                 int64_t* idx_K, float* lse) {
  const int64_t E = o.E;
  float M, S;
  softmax_stats(lanes, l, E, M, S);
  float Q = 1.f;
  if (o.sigmoid) {
    float q = 0.f;
    for (int64_t c = lanes.lane(); c < E; c += L::kCount) q += sigmoidf_(l[c]);
    Q = lanes.sum(q) + 1e-20f;
  }
  for (int64_t c = lanes.lane(); c < E; c += L::kCount) {
    probs[c] = o.sigmoid ? sigmoidf_(l[c]) / Q : expf(l[c] - M) / S;
  }
  int chosen[kMaxTopK];
  float score_k[kMaxTopK];
  float total = 0.f;
  for (int k = 0; k < o.K; ++k) {
    float best = -INFINITY;
    int best_c = INT_MAX;
    for (int64_t c = lanes.lane(); c < E; c += L::kCount) {
      bool taken = false;
      for (int j = 0; j < k; ++j) taken = taken || chosen[j] == c;
      if (taken) continue;
      const float v = router_score(l, c, o.sigmoid, M, S) + (bias ? bias[c] : 0.f);
      if (v > best) {
        best = v;
        best_c = static_cast<int>(c);
      }
    }
    lanes.argmax(best, best_c);
    if (best_c >= E) {
      // Every candidate is NaN: take the first free expert, so the index is
      // valid (the step's loss is NaN and will be skipped).
      best_c = 0;
      for (int j = 0; j < k; ++j)
        if (chosen[j] == best_c) ++best_c, j = -1;
    }
    chosen[k] = best_c;
    score_k[k] = router_score(l, best_c, o.sigmoid, M, S);
    total += score_k[k];
  }
  if (lanes.lane() == 0) {
    const float z = o.renormalize ? total + 1e-20f : 1.f;
    for (int k = 0; k < o.K; ++k) {
      idx_K[k] = chosen[k];
      weight_K[k] = score_k[k] / z;
    }
    *lse = M + logf(S);
  }
}

// Its backward: dl[E] from the gradients of weight_K (g_weight, may be
// null), probs[E] (g_probs, may be null) and lse (g_lse).
template <class L>
MOXIE_HD void router_backward_row(const L& lanes, const float* l, const int64_t* idx_K,
                                  const float* g_weight, const float* g_probs, float g_lse,
                                  const RouterRowOptions& o, float* dl) {
  const int64_t E = o.E;
  float M, S;
  softmax_stats(lanes, l, E, M, S);
  // d/d(score of the k-th choice), through the renormalisation w_k = r_k / Z.
  float dr[kMaxTopK];
  float total = 0.f, gw = 0.f;
  for (int k = 0; k < o.K; ++k) {
    dr[k] = g_weight ? g_weight[k] : 0.f;
    total += router_score(l, idx_K[k], o.sigmoid, M, S);
  }
  if (o.renormalize) {
    const float z = total + 1e-20f;
    for (int k = 0; k < o.K; ++k) gw += dr[k] * router_score(l, idx_K[k], o.sigmoid, M, S) / z;
    for (int k = 0; k < o.K; ++k) dr[k] = (dr[k] - gw) / z;
  }
  auto from_choice = [&](int64_t c) {
    float d = 0.f;
    for (int k = 0; k < o.K; ++k)
      if (idx_K[k] == c) d += dr[k];
    return d;
  };
  if (!o.sigmoid) {
    // probs are the scores s = softmax(l): dl = s * (ds - <s, ds>) + g_lse * s.
    float dot = 0.f;
    for (int64_t c = lanes.lane(); c < E; c += L::kCount) {
      const float s = expf(l[c] - M) / S;
      dot += s * ((g_probs ? g_probs[c] : 0.f) + from_choice(c));
    }
    dot = lanes.sum(dot);
    for (int64_t c = lanes.lane(); c < E; c += L::kCount) {
      const float s = expf(l[c] - M) / S;
      const float ds = (g_probs ? g_probs[c] : 0.f) + from_choice(c);
      dl[c] = s * (ds - dot) + g_lse * s;
    }
    return;
  }
  // Sigmoid: p = sig / Q with Q = sum(sig) + 1e-20.
  float q = 0.f, gp_dot = 0.f;
  for (int64_t c = lanes.lane(); c < E; c += L::kCount) q += sigmoidf_(l[c]);
  const float Q = lanes.sum(q) + 1e-20f;
  for (int64_t c = lanes.lane(); c < E; c += L::kCount) {
    gp_dot += (g_probs ? g_probs[c] : 0.f) * sigmoidf_(l[c]) / Q;
  }
  gp_dot = lanes.sum(gp_dot);
  for (int64_t c = lanes.lane(); c < E; c += L::kCount) {
    const float sg = sigmoidf_(l[c]);
    const float dsig = ((g_probs ? g_probs[c] : 0.f) - gp_dot) / Q + from_choice(c);
    dl[c] = dsig * sg * (1.f - sg) + g_lse * expf(l[c] - M) / S;
  }
}

// out[D] = sum over the K assignments of one token that were kept (pos >= 0)
// of w[pos] * rows[pos] (w null: weight 1), accumulated in float. Unpermute
// (with the routing weights) and the permutation's backward (without).
template <class T, class L>
MOXIE_HD void gather_sum_row(const L& lanes, const T* rows, int64_t D, const int64_t* pos_K, int K,
                             const float* w, T* out) {
  for (int64_t c = lanes.lane(); c < D; c += L::kCount) {
    float acc = 0.f;
    for (int k = 0; k < K; ++k) {
      const int64_t p = pos_K[k];
      if (p < 0) continue;
      acc += (w ? w[p] : 1.f) * Num<T>::load(rows[p * D + c]);
    }
    out[c] = Num<T>::store(acc);
  }
}

// out[D] = w * in[D] (w: 1 when no weight is given); with `dot_with`, lane 0
// also writes sum(in * dot_with) to *dot. The permutation (rows copied to
// their experts) and the unpermute's backward (with the weight's gradient).
template <class T, class L>
MOXIE_HD void scale_row(const L& lanes, const T* in, int64_t D, float w, T* out, const T* dot_with,
                        float* dot) {
  float acc = 0.f;
  for (int64_t c = lanes.lane(); c < D; c += L::kCount) {
    const float v = Num<T>::load(in[c]);
    out[c] = Num<T>::store(w * v);
    if (dot_with) acc += v * Num<T>::load(dot_with[c]);
  }
  if (dot_with) {
    acc = lanes.sum(acc);
    if (lanes.lane() == 0) *dot = acc;
  }
}

// SwiGLU, elementwise: a = silu(g) * u; backward dg = da * u * silu'(g),
// du = da * silu(g), with silu'(g) = s (1 + g (1 - s)), s = sigmoid(g).
MOXIE_HD float swiglu_forward(float g, float u) { return g * sigmoidf_(g) * u; }
MOXIE_HD void swiglu_backward(float g, float u, float da, float& dg, float& du) {
  const float s = sigmoidf_(g);
  dg = da * u * s * (1.f + g * (1.f - s));
  du = da * g * s;
}

}  // namespace moxie::kernels
