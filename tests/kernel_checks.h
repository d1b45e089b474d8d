// Checks of moxie's fused kernels against the ATen sequences they replace,
// on any device: the CPU tests run them on the kernels' host forms (the same
// row arithmetic as the GPU), tests/gpu/test_kernels.cpp on CUDA. Every
// reference is written here from ATen ops, independently of the kernels.
//
// Tolerances, as a fraction of the reference's largest magnitude: float32
// 2e-5 (reduction order only); bfloat16 outputs 1.6e-2 and gradients 3e-2
// (a few bf16 ulps: the kernels round once, ATen's sequences round after
// every op, so the reference is computed in float32 from the same bf16
// inputs and both paths are held to it).
#pragma once

#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "core/model/fused.h"
#include "experts/fused.h"
#include "experts/grouped_swiglu.h"
#include "optim/adamw.h"

namespace moxie::testing {

inline double tolerance(torch::ScalarType t, bool grad) {
  if (t == torch::kFloat) return 2e-5;
  return grad ? 3e-2 : 1.6e-2;
}

// max |a - b| / max(|b|, tiny), both taken to float64 on the CPU.
inline double rel_error(const torch::Tensor& a, const torch::Tensor& b) {
  auto x = a.detach().to(torch::kCPU, torch::kDouble),
       y = b.detach().to(torch::kCPU, torch::kDouble);
  REQUIRE(x.sizes() == y.sizes());
  if (y.numel() == 0) return 0;
  const double scale = std::max(y.abs().max().item<double>(), 1e-30);
  return (x - y).abs().max().item<double>() / scale;
}

#define MOXIE_CHECK_CLOSE(a, b, tol)                                           \
  do {                                                                         \
    const double err_ = ::moxie::testing::rel_error((a), (b));                 \
    INFO(#a << " vs " << #b << ": relative error " << err_ << " > " << (tol)); \
    CHECK(err_ <= (tol));                                                      \
  } while (0)

inline torch::TensorOptions on(torch::Device d, torch::ScalarType t) {
  return torch::TensorOptions().device(d).dtype(t);
}

// RMSNorm, forward and backward, against layers.cpp's ATen formula in float32.
inline void check_rms_norm(torch::Device dev, torch::ScalarType dtype, int64_t N = 37,
                           int64_t D = 96) {
  torch::manual_seed(1);
  auto x = (torch::randn({N, D}) * 3).to(on(dev, dtype)).requires_grad_();
  auto w = (1 + 0.1 * torch::randn({D})).to(on(dev, dtype)).requires_grad_();
  auto dy = torch::randn({N, D}).to(on(dev, dtype));
  auto y = fused_rms_norm(x, w, 1e-5);
  y.backward(dy);
  auto xr = x.detach().to(torch::kFloat).requires_grad_(),
       wr = w.detach().to(torch::kFloat).requires_grad_();
  auto ref = wr * (xr * torch::rsqrt(xr.pow(2).mean(-1, true) + 1e-5)).to(dtype).to(torch::kFloat);
  ref.backward(dy.to(torch::kFloat));
  MOXIE_CHECK_CLOSE(y, ref, tolerance(dtype, false));
  MOXIE_CHECK_CLOSE(x.grad(), xr.grad(), tolerance(dtype, true));
  MOXIE_CHECK_CLOSE(w.grad(), wr.grad(), tolerance(dtype, true));
}

// Cross-entropy per row and its gradient, against ATen on float32 logits.
inline void check_cross_entropy(torch::Device dev, torch::ScalarType dtype, int64_t N = 29,
                                int64_t V = 1000) {
  torch::manual_seed(2);
  auto logits = (torch::randn({N, V}) * 4).to(on(dev, dtype)).requires_grad_();
  auto targets = torch::randint(0, V, {N}, torch::kLong).to(dev);
  auto g = torch::rand({N}).to(dev);  // per-row loss weights, as a loss mask gives
  auto loss = fused_cross_entropy(logits, targets);
  (loss * g).sum().backward();
  auto lr = logits.detach().to(torch::kFloat).requires_grad_();
  auto ref = torch::nn::functional::cross_entropy(
      lr, targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  (ref * g).sum().backward();
  CHECK(loss.scalar_type() == torch::kFloat);
  MOXIE_CHECK_CLOSE(loss, ref,
                    tolerance(torch::kFloat, false) * 10);  // float math on the same inputs
  MOXIE_CHECK_CLOSE(logits.grad(), lr.grad(), tolerance(dtype, true));
  // A target outside the vocabulary gives NaN, not a read out of bounds.
  auto bad = torch::full({1}, V, torch::kLong).to(dev);
  CHECK(std::isnan(fused_cross_entropy(logits.detach().narrow(0, 0, 1), bad).item<float>()));
}

struct RouterCase {
  int64_t E, K;
  bool sigmoid, renormalize, bias;
};

// The router's ATen composition (experts/router.cpp), written again here.
inline void check_router(torch::Device dev, const RouterCase& c, int64_t T = 53) {
  torch::manual_seed(3 + c.E + c.K);
  auto logits = (torch::randn({T, c.E}) * 2).to(dev).requires_grad_();
  auto bias = c.bias ? (torch::randn({c.E}) * 0.3).to(dev) : torch::Tensor();
  auto gw = torch::randn({T, c.K}).to(dev), gp = torch::randn({T, c.E}).to(dev),
       gl = torch::randn({T}).to(dev);
  auto r = fused_route(logits, bias, c.K, c.sigmoid, c.renormalize);
  ((r.weight_TK * gw).sum() + (r.probs_TE * gp).sum() + (r.lse_T * gl).sum()).backward();

  auto lr = logits.detach().clone().requires_grad_();
  torch::Tensor scores, probs;
  if (c.sigmoid) {
    scores = torch::sigmoid(lr);
    probs = scores / (scores.sum(-1, true) + 1e-20);
  } else {
    scores = torch::softmax(lr, -1);
    probs = scores;
  }
  auto selection = c.bias ? scores.detach() + bias : scores.detach();
  auto idx = std::get<1>(selection.topk(c.K, -1));
  auto weight = scores.gather(1, idx);
  if (c.renormalize) weight = weight / (weight.sum(-1, true) + 1e-20);
  auto lse = torch::logsumexp(lr, -1);
  ((weight * gw).sum() + (probs * gp).sum() + (lse * gl).sum()).backward();

  CHECK(torch::equal(r.idx_TK.cpu(), idx.cpu()));
  MOXIE_CHECK_CLOSE(r.weight_TK, weight, 1e-5);
  MOXIE_CHECK_CLOSE(r.probs_TE, probs, 1e-5);
  MOXIE_CHECK_CLOSE(r.lse_T, lse, 1e-5);
  MOXIE_CHECK_CLOSE(logits.grad(), lr.grad(), 1e-4);
}

// Permute / unpermute with routing weights and dropped assignments, against
// index_select and index_add.
inline void check_permute(torch::Device dev, torch::ScalarType dtype, int64_t T = 41, int64_t K = 2,
                          int64_t D = 24) {
  torch::manual_seed(4);
  const int64_t A = T * K;
  // A random order of assignments, a fifth of them dropped (-1).
  auto order = torch::randperm(A, torch::kLong);
  auto kept = order.narrow(0, 0, A - A / 5);
  const int64_t N = kept.size(0);
  auto pos = torch::full({A}, -1, torch::kLong);
  pos.index_put_({kept}, torch::arange(N, torch::kLong));
  auto src = kept.div(K, "floor");
  pos = pos.view({T, K}).to(dev);
  src = src.to(dev);
  auto x = torch::randn({T, D}).to(on(dev, dtype)).requires_grad_();
  auto y = torch::randn({N, D}).to(on(dev, dtype)).requires_grad_();
  auto w = torch::rand({N}).to(dev).requires_grad_();
  auto gx = torch::randn({N, D}).to(on(dev, dtype)), gy = torch::randn({T, D}).to(on(dev, dtype));

  auto px = fused_permute(x, src, pos);
  px.backward(gx);
  auto uy = fused_unpermute(y, w, src, pos);
  uy.backward(gy);

  auto xr = x.detach().to(torch::kFloat).requires_grad_();
  auto yr = y.detach().to(torch::kFloat).requires_grad_();
  auto wr = w.detach().clone().requires_grad_();
  auto pr = xr.index_select(0, src);
  pr.backward(gx.to(torch::kFloat));
  auto ur = torch::zeros({T, D}, xr.options()).index_add(0, src, yr * wr.unsqueeze(1));
  ur.backward(gy.to(torch::kFloat));

  CHECK(torch::equal(px.to(torch::kFloat).cpu(), pr.detach().cpu()));  // a copy: exact
  MOXIE_CHECK_CLOSE(x.grad(), xr.grad(), tolerance(dtype, false));
  MOXIE_CHECK_CLOSE(uy, ur, tolerance(dtype, false));
  MOXIE_CHECK_CLOSE(y.grad(), yr.grad(), tolerance(dtype, false));
  MOXIE_CHECK_CLOSE(w.grad(), wr.grad(), tolerance(dtype, true));
}

// SwiGLU, packed [N, 2H] and as two tensors, against silu(g) * u.
inline void check_swiglu(torch::Device dev, torch::ScalarType dtype, int64_t N = 33,
                         int64_t H = 40) {
  torch::manual_seed(5);
  auto h = (torch::randn({N, 2 * H}) * 2).to(on(dev, dtype)).requires_grad_();
  auto da = torch::randn({N, H}).to(on(dev, dtype));
  auto a = fused_swiglu_packed(h);
  a.backward(da);
  auto hr = h.detach().to(torch::kFloat).requires_grad_();
  auto ar = torch::silu(hr.narrow(1, 0, H)) * hr.narrow(1, H, H);
  ar.backward(da.to(torch::kFloat));
  MOXIE_CHECK_CLOSE(a, ar, tolerance(dtype, false));
  MOXIE_CHECK_CLOSE(h.grad(), hr.grad(), tolerance(dtype, true));

  auto g = h.detach().narrow(1, 0, H).contiguous().view({3, N / 3, H}).requires_grad_();
  auto u = h.detach().narrow(1, H, H).contiguous().view({3, N / 3, H}).requires_grad_();
  auto a2 = fused_swiglu(g, u);
  a2.backward(da.view({3, N / 3, H}));
  MOXIE_CHECK_CLOSE(a2.view({N, H}), ar, tolerance(dtype, false));
  MOXIE_CHECK_CLOSE(g.grad().view({N, H}), hr.grad().narrow(1, 0, H), tolerance(dtype, true));
  MOXIE_CHECK_CLOSE(u.grad().view({N, H}), hr.grad().narrow(1, H, H), tolerance(dtype, true));
}

// The experts as grouped GEMMs against the naive token loop: groups whose
// sizes are multiples of 8 (used as they are), others (padded), an empty
// expert, and, as under expert parallelism, several segments per expert.
inline void check_grouped_gemm(torch::Device dev, torch::ScalarType dtype) {
  torch::manual_seed(6);
  const int64_t E = 4, D = 32, H = 24;
  for (int layout = 0; layout < 3; ++layout) {
    const bool repeated = layout == 2;
    std::vector<int64_t> counts = layout == 0   ? std::vector<int64_t>{8, 0, 16, 5}
                                  : layout == 1 ? std::vector<int64_t>{7, 0, 9, 5}
                                                : std::vector<int64_t>{3, 0, 5, 2, 4, 1, 0, 6};
    std::vector<int64_t> experts;
    if (repeated) experts = {0, 1, 2, 3, 0, 1, 2, 3};  // two source ranks
    int64_t N = 0;
    for (auto c : counts) N += c;
    auto x = torch::randn({N, D}).to(on(dev, dtype)).requires_grad_();
    auto w13 = (torch::randn({E, 2 * H, D}) * 0.2).to(on(dev, dtype)).requires_grad_();
    auto w2 = (torch::randn({E, D, H}) * 0.2).to(on(dev, dtype)).requires_grad_();
    auto gy = torch::randn({N, D}).to(on(dev, dtype));
    auto y = grouped_swiglu_gemm(x, w13, w2, counts, experts);
    y.backward(gy);
    auto xr = x.detach().to(torch::kFloat).cpu().requires_grad_();
    auto w13r = w13.detach().to(torch::kFloat).cpu().requires_grad_();
    auto w2r = w2.detach().to(torch::kFloat).cpu().requires_grad_();
    auto yr = grouped_swiglu_reference(xr, w13r, w2r, counts, experts);
    yr.backward(gy.to(torch::kFloat).cpu());
    INFO("layout " << layout << " (0: aligned, 1: padded, 2: two segments per expert)");
    MOXIE_CHECK_CLOSE(y, yr, tolerance(dtype, false));
    MOXIE_CHECK_CLOSE(x.grad(), xr.grad(), tolerance(dtype, true));
    MOXIE_CHECK_CLOSE(w13.grad(), w13r.grad(), tolerance(dtype, true));
    MOXIE_CHECK_CLOSE(w2.grad(), w2r.grad(), tolerance(dtype, true));
  }
}

// Multi-tensor AdamW against ATen's _fused_adamw_ on float32 copies, for
// float32 weights and for bfloat16 parameters with fp32 masters and bf16
// grads, at several step counts (bias corrections) over three updates.
inline void check_multi_tensor_adamw(torch::Device dev) {
  torch::manual_seed(7);
  OptimOptions o;
  o.beta1 = 0.9;
  o.beta2 = 0.95;
  o.eps = 1e-8;
  const double lr = 3e-3, wd = 0.1;
  const std::vector<int64_t> sizes = {5, 70000, 128 * 3};  // one spans two chunks
  std::vector<torch::Tensor> w, m, v, g, lowp, w_ref, m_ref, v_ref;
  std::vector<int64_t> steps;
  for (size_t i = 0; i < sizes.size(); ++i) {
    w.push_back(torch::randn({sizes[i]}).to(dev));
    m.push_back(torch::zeros({sizes[i]}).to(dev));
    v.push_back(torch::zeros({sizes[i]}).to(dev));
    const bool bf16 = i != 0;
    lowp.push_back(bf16 ? w.back().to(torch::kBFloat16) : torch::Tensor());
    w_ref.push_back(w.back().clone());
    m_ref.push_back(m.back().clone());
    v_ref.push_back(v.back().clone());
    steps.push_back(static_cast<int64_t>(i) * 7);  // different step counts per tensor
  }
  for (int update = 0; update < 3; ++update) {
    g.clear();
    std::vector<torch::Tensor> g_ref, step_ref;
    for (size_t i = 0; i < sizes.size(); ++i) {
      auto gi = torch::randn({sizes[i]}).to(dev);
      if (lowp[i].defined()) gi = gi.to(torch::kBFloat16);
      g.push_back(gi);
      g_ref.push_back(gi.to(torch::kFloat));
      ++steps[i];
      step_ref.push_back(torch::full({}, static_cast<double>(steps[i] - 1), torch::kFloat).to(dev));
    }
    multi_tensor_adamw(w, g, m, v, lowp, steps, lr, wd, o);
    torch::_foreach_add_(step_ref, 1);
    at::_fused_adamw_(w_ref, g_ref, m_ref, v_ref, {}, step_ref, lr, o.beta1, o.beta2, wd, o.eps,
                      false, false, std::nullopt, std::nullopt);
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    INFO("tensor " << i << " of " << sizes[i] << " elements");
    MOXIE_CHECK_CLOSE(w[i], w_ref[i], 1e-5);
    MOXIE_CHECK_CLOSE(m[i], m_ref[i], 1e-5);
    MOXIE_CHECK_CLOSE(v[i], v_ref[i], 1e-5);
    if (lowp[i].defined()) CHECK(torch::equal(lowp[i].cpu(), w[i].to(torch::kBFloat16).cpu()));
  }
}

inline const std::vector<RouterCase>& router_cases() {
  static const std::vector<RouterCase> cases = {
      {8, 2, false, true, false},  {8, 2, false, false, false}, {16, 4, true, true, true},
      {64, 8, true, false, false}, {6, 1, false, true, true},   {40, 6, false, true, true}};
  return cases;
}

}  // namespace moxie::testing
