// MoELayer against a naive per-token computation: for each token, score every
// expert, take the top-k, and sum the chosen experts' SwiGLU outputs by weight.
#include <algorithm>
#include <catch2/catch.hpp>
#include <numeric>

#include "experts/moe_layer.h"

using namespace moxie;

namespace {

torch::Tensor expert_mlp(const torch::Tensor& w13, const torch::Tensor& w2, int64_t e,
                         const torch::Tensor& x) {
  const int64_t H = w2.size(2);
  auto gate = torch::mv(w13[e].narrow(0, 0, H), x);
  auto up = torch::mv(w13[e].narrow(0, H, H), x);
  return torch::mv(w2[e], torch::silu(gate) * up);
}

// Per-token reference, with a capacity applied in token order (position policy).
torch::Tensor naive_moe(MoELayer& layer, const torch::Tensor& x_TD, const MoEOptions& o,
                        int64_t capacity) {
  auto W = layer->gate->weight;
  auto w13 = layer->experts->w13;
  auto w2 = layer->experts->w2;
  std::vector<int64_t> used(o.num_experts, 0);
  std::vector<torch::Tensor> rows;
  for (int64_t t = 0; t < x_TD.size(0); ++t) {
    auto x = x_TD[t];
    auto probs = torch::softmax(torch::mv(W, x), 0);
    std::vector<int64_t> order(o.num_experts);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return probs[a].item<double>() > probs[b].item<double>();
    });
    torch::Tensor denom = torch::zeros({}, x.options());
    for (int64_t k = 0; k < o.top_k; ++k) denom = denom + probs[order[k]];
    auto y = torch::zeros_like(x);
    for (int64_t k = 0; k < o.top_k; ++k) {
      const int64_t e = order[k];
      if (capacity > 0 && used[e]++ >= capacity) continue;  // dropped
      y = y + probs[e] / denom * expert_mlp(w13, w2, e, x);
    }
    if (layer->shared_expert) {
      auto s = layer->shared_expert;
      auto shared =
          torch::mv(s->down_proj->weight, torch::silu(torch::mv(s->gate_proj->weight, x)) *
                                              torch::mv(s->up_proj->weight, x));
      y = y + torch::sigmoid(torch::mv(layer->shared_expert_gate->weight, x)) * shared;
    }
    rows.push_back(y);
  }
  return torch::stack(rows);
}

MoEOptions small_options() {
  MoEOptions o;
  o.num_experts = 6;
  o.top_k = 2;
  o.expert_hidden = 7;
  o.aux_loss_coef = 0.0;
  return o;
}

void randomise(MoELayer& layer) {
  torch::NoGradGuard g;
  for (auto& p : layer->parameters()) p.normal_(0, 0.5);
}

}  // namespace

TEST_CASE("dropless MoE layer equals the per-token reference, values and gradients") {
  torch::manual_seed(9);
  auto o = small_options();
  MoELayer layer(5, o);
  layer->to(torch::kDouble);
  randomise(layer);
  auto x = torch::randn({2, 7, 5}, torch::kDouble).requires_grad_(true);

  auto out = layer(x);
  auto upstream = torch::randn_like(out.y);
  (out.y * upstream).sum().backward();
  auto grad_x = x.grad().clone();
  auto grad_router = layer->gate->weight.grad().clone();
  auto grad_w13 = layer->experts->w13.grad().clone();
  layer->zero_grad();
  x.mutable_grad().reset();

  auto ref = naive_moe(layer, x.reshape({-1, 5}), o, 0).reshape({2, 7, 5});
  (ref * upstream).sum().backward();
  CHECK(torch::allclose(out.y, ref, 1e-10, 1e-12));
  CHECK(torch::allclose(grad_x, x.grad(), 1e-10, 1e-12));
  CHECK(torch::allclose(grad_router, layer->gate->weight.grad(), 1e-10, 1e-12));
  CHECK(torch::allclose(grad_w13, layer->experts->w13.grad(), 1e-10, 1e-12));
  CHECK(out.stats.tokens_per_expert_E.sum().item<int64_t>() == 14 * 2);
  CHECK(out.stats.dropped == 0);
}

TEST_CASE("capacity-factor MoE layer drops exactly what the reference drops") {
  torch::manual_seed(10);
  auto o = small_options();
  o.capacity_factor = 0.6;
  o.drop_policy = DropPolicy::kPosition;
  MoELayer layer(5, o);
  layer->to(torch::kDouble);
  randomise(layer);
  auto x = torch::randn({30, 5}, torch::kDouble);
  auto out = layer(x);
  const int64_t capacity = expert_capacity(0.6, 30, 2, 6);
  auto ref = naive_moe(layer, x, o, capacity);
  CHECK(out.stats.dropped > 0);
  CHECK(torch::allclose(out.y, ref, 1e-10, 1e-12));
}

TEST_CASE("shared experts are added on every token, Qwen-MoE style") {
  torch::manual_seed(11);
  auto o = small_options();
  o.num_shared_experts = 1;
  o.shared_expert_hidden = 9;
  MoELayer layer(5, o);
  layer->to(torch::kDouble);
  randomise(layer);
  auto x = torch::randn({8, 5}, torch::kDouble);
  CHECK(torch::allclose(layer(x).y, naive_moe(layer, x, o, 0), 1e-10, 1e-12));
  auto names = layer->named_parameters();
  CHECK(names.contains("shared_expert.gate_proj.weight"));
  CHECK(names.contains("shared_expert_gate.weight"));
}
