// Each of moxie's fused CUDA kernels against the unfused ATen sequence it
// replaces, forward and backward together, at configs/gpu-1b.yaml's sizes
// (8 x 2048 tokens, D 2048, vocabulary 32000, 16 experts, top-2, H 768,
// bf16). Both run in this process on the same inputs, alternated; each
// figure is the median of 7 timed rounds after a warm-up, synchronised with
// the device. Prints one line per op (ATen ms, fused ms, speed-up) and a
// JSON line. Without a GPU it says so and exits 0 (benchmarks are not tests).
// Usage: bench_kernels [--tokens N]
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <sstream>
#include <vector>

#include "core/model/fused.h"
#include "experts/fused.h"
#include "experts/grouped_swiglu.h"
#include "optim/adamw.h"

using namespace moxie;
using Clock = std::chrono::steady_clock;

namespace {

double median_ms(const std::function<void()>& f, int rounds = 7, int reps = 5) {
  f();
  torch::cuda::synchronize();
  std::vector<double> ms;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) f();
    torch::cuda::synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / reps);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (!torch::cuda::is_available()) {
    std::cout << "bench_kernels: no CUDA device is visible; nothing to measure\n";
    return 0;
  }
  int64_t T = 8 * 2048;
  for (int i = 1; i + 1 < argc; i += 2)
    if (!std::strcmp(argv[i], "--tokens")) T = std::atoll(argv[i + 1]);
  const int64_t D = 2048, V = 32000, E = 16, K = 2, H = 768;
  const auto dev = torch::Device(torch::kCUDA, 0);
  const auto bf = torch::TensorOptions().device(dev).dtype(torch::kBFloat16);
  const auto f32 = torch::TensorOptions().device(dev).dtype(torch::kFloat);
  torch::manual_seed(0);
  std::ostringstream json;
  json << "{\"tokens\": " << T;
  auto report = [&](const char* op, double aten, double fused) {
    std::cout << op << ": ATen " << aten << " ms, fused " << fused << " ms, speed-up "
              << aten / fused << "x\n";
    json << ", \"" << op << "\": {\"aten_ms\": " << aten << ", \"fused_ms\": " << fused
         << ", \"speedup\": " << aten / fused << "}";
  };

  {  // RMSNorm
    auto x = torch::randn({T, D}, bf).requires_grad_();
    auto w = torch::ones({D}, bf).requires_grad_();
    auto dy = torch::randn({T, D}, bf);
    auto aten = [&] {
      auto xf = x.to(torch::kFloat);
      auto y = w * (xf * torch::rsqrt(xf.pow(2).mean(-1, true) + 1e-5)).to(torch::kBFloat16);
      y.backward(dy);
    };
    auto fused = [&] { fused_rms_norm(x, w, 1e-5).backward(dy); };
    report("rmsnorm", median_ms(aten), median_ms(fused));
  }
  {  // cross-entropy over the vocabulary
    auto logits = torch::randn({T, V}, bf).requires_grad_();
    auto targets =
        torch::randint(0, V, {T}, torch::TensorOptions().device(dev).dtype(torch::kLong));
    auto aten = [&] {
      auto l = torch::nn::functional::cross_entropy(logits.to(torch::kFloat), targets);
      l.backward();
    };
    auto fused = [&] { fused_cross_entropy(logits, targets).mean().backward(); };
    report("cross_entropy", median_ms(aten), median_ms(fused));
  }
  {  // router: scores, top-k, weights, balance and z-loss statistics
    auto logits = torch::randn({T, E}, f32).requires_grad_();
    auto aten = [&] {
      auto s = torch::softmax(logits, -1);
      auto idx = std::get<1>(s.detach().topk(K, -1));
      auto w = s.gather(1, idx);
      w = w / (w.sum(-1, true) + 1e-20);
      auto counts = torch::bincount(idx.flatten(), {}, E);
      auto loss = w.sum() + s.mean(0).sum() + torch::logsumexp(logits, -1).pow(2).mean();
      loss.backward();
    };
    auto fused = [&] {
      auto r = fused_route(logits, {}, K, false, true);
      auto counts = torch::bincount(r.idx_TK.flatten(), {}, E);
      auto loss = r.weight_TK.sum() + r.probs_TE.mean(0).sum() + r.lse_T.pow(2).mean();
      loss.backward();
    };
    report("router", median_ms(aten), median_ms(fused));
  }
  // Routing shared by the permutation and the experts: tokens to random experts.
  auto idx = torch::randint(0, E, {T * K}, torch::TensorOptions().dtype(torch::kLong));
  auto order = std::get<1>(idx.sort(true, 0, false));
  const int64_t N = T * K;
  auto pos = torch::empty({N}, torch::kLong);
  pos.index_put_({order}, torch::arange(N, torch::kLong));
  auto src = order.div(K, "floor").to(dev);
  pos = pos.view({T, K}).to(dev);
  auto counts_t = torch::bincount(idx, {}, E);
  std::vector<int64_t> counts(counts_t.data_ptr<int64_t>(), counts_t.data_ptr<int64_t>() + E);
  {  // permute + unpermute with routing weights
    auto x = torch::randn({T, D}, bf).requires_grad_();
    auto w = torch::rand({N}, f32).requires_grad_();
    auto gy = torch::randn({T, D}, bf);
    auto aten = [&] {
      auto xp = x.index_select(0, src);
      auto y = torch::zeros({T, D}, bf).index_add(0, src, xp * w.to(torch::kBFloat16).unsqueeze(1));
      y.backward(gy);
    };
    auto fused = [&] { fused_unpermute(fused_permute(x, src, pos), w, src, pos).backward(gy); };
    report("permute_unpermute", median_ms(aten), median_ms(fused));
  }
  {  // SwiGLU on the experts' [N, 2H] pre-activations
    auto h = torch::randn({N, 2 * H}, bf).requires_grad_();
    auto da = torch::randn({N, H}, bf);
    auto aten = [&] { (torch::silu(h.narrow(1, 0, H)) * h.narrow(1, H, H)).backward(da); };
    auto fused = [&] { fused_swiglu_packed(h).backward(da); };
    report("swiglu", median_ms(aten), median_ms(fused));
  }
  {  // experts: grouped GEMMs vs one matmul per expert
    auto x = torch::randn({N, D}, bf).requires_grad_();
    auto w13 = (torch::randn({E, 2 * H, D}, bf) * 0.02).requires_grad_();
    auto w2 = (torch::randn({E, D, H}, bf) * 0.02).requires_grad_();
    auto gy = torch::randn({N, D}, bf);
    auto loop = [&] { grouped_swiglu_loop(x, w13, w2, counts).backward(gy); };
    auto grouped = [&] { grouped_swiglu_gemm(x, w13, w2, counts).backward(gy); };
    const double loop_ms = median_ms(loop), grouped_ms = median_ms(grouped);
    report("experts_grouped_gemm", loop_ms, grouped_ms);
    const double flops = 6.0 * N * D * 3 * H;  // forward + backward of the three projections
    std::cout << "  experts: " << flops / grouped_ms / 1e9 << " TFLOP/s grouped, "
              << flops / loop_ms / 1e9 << " TFLOP/s per-expert loop\n";
  }
  {  // AdamW over 0.4B bf16 parameters with fp32 masters, in 64 tensors
    const int64_t n = 6'000'000, count = 64;
    std::vector<torch::Tensor> masters, params, grads, m, v, grads32, steps_t;
    std::vector<int64_t> steps(count, 10);
    for (int64_t i = 0; i < count; ++i) {
      masters.push_back(torch::randn({n}, f32));
      params.push_back(masters.back().to(torch::kBFloat16));
      grads.push_back(torch::randn({n}, bf));
      m.push_back(torch::zeros({n}, f32));
      v.push_back(torch::zeros({n}, f32));
      steps_t.push_back(torch::full({}, 10.0, f32));
    }
    OptimOptions o;
    auto aten = [&] {  // what AdamW::step did before: fp32 grads, fused update, rounding pass
      std::vector<torch::Tensor> g32;
      for (auto& g : grads) g32.push_back(g.to(torch::kFloat));
      at::_fused_adamw_(masters, g32, m, v, {}, steps_t, 1e-4, o.beta1, o.beta2, 0.1, o.eps, false,
                        false, std::nullopt, std::nullopt);
      torch::_foreach_copy_(params, masters);
    };
    auto fused = [&] { multi_tensor_adamw(masters, grads, m, v, params, steps, 1e-4, 0.1, o); };
    report("adamw", median_ms(aten, 5, 2), median_ms(fused, 5, 2));
  }
  json << "}";
  std::cout << json.str() << "\n";
  return 0;
}
