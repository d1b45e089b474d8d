// Token permutation and capacity dropping.
#include "experts/permute.h"

#include <cmath>

#include "experts/fused.h"

namespace moxie {

int64_t expert_capacity(double capacity_factor, int64_t num_tokens, int64_t top_k,
                        int64_t num_experts) {
  if (capacity_factor <= 0) return 0;
  return static_cast<int64_t>(
      std::ceil(capacity_factor * static_cast<double>(num_tokens * top_k) / num_experts));
}

PermutePlan make_permute_plan(const torch::Tensor& expert_idx_TK, const torch::Tensor& weight_TK,
                              int64_t num_experts, int64_t capacity, DropPolicy policy,
                              int64_t group_tokens) {
  const int64_t T = expert_idx_TK.size(0);
  const int64_t K = expert_idx_TK.size(1);
  PermutePlan plan;
  plan.num_tokens = T;

  torch::Tensor order_N;  // indices into the flattened [T*K] assignments
  {
    torch::NoGradGuard no_grad;
    auto expert_A = expert_idx_TK.flatten();
    // Flattened index t*K + k grows with t, so stable sorts keep token order.
    if (capacity <= 0) {
      order_N = std::get<1>(expert_A.sort(true, 0, false));
    } else {
      const int64_t G = group_tokens > 0 ? group_tokens : std::max<int64_t>(T, 1);
      const int64_t n_groups = (T + G - 1) / G;
      auto group_A = torch::arange(T * K, expert_A.options()).div(K * G, "floor");
      auto key_A = group_A * num_experts + expert_A;  // one slot per (group, expert)
      torch::Tensor by_priority;
      if (policy == DropPolicy::kProbs) {
        by_priority = std::get<1>(weight_TK.detach().flatten().sort(true, 0, true));
      } else {
        by_priority = torch::arange(T * K, expert_A.options());
      }
      auto by_key = std::get<1>(key_A.index_select(0, by_priority).sort(true, 0, false));
      order_N = by_priority.index_select(0, by_key);
      auto sorted_key = key_A.index_select(0, order_N);
      auto counts = torch::bincount(sorted_key, {}, n_groups * num_experts);
      auto starts = counts.cumsum(0) - counts;
      auto rank_N =
          torch::arange(order_N.size(0), order_N.options()) - starts.index_select(0, sorted_key);
      auto keep = rank_N < capacity;
      plan.dropped = order_N.size(0) - keep.sum().item<int64_t>();
      // Survivors back into expert-major, token order.
      order_N = std::get<0>(order_N.masked_select(keep).sort(true, 0, false));
      order_N = order_N.index_select(
          0, std::get<1>(expert_A.index_select(0, order_N).sort(true, 0, false)));
    }
    plan.source_token_N = order_N.div(K, "floor");
    plan.tokens_per_expert_E = torch::bincount(expert_A.index_select(0, order_N), {}, num_experts);
    auto counts = plan.tokens_per_expert_E.to(torch::kCPU).contiguous();
    plan.counts.assign(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + num_experts);
  }
  plan.weight_N = weight_TK.flatten().index_select(0, order_N);
  if (fused_moe_applies(weight_TK)) {
    torch::NoGradGuard no_grad;
    plan.pos_TK = torch::full({T * K}, -1, order_N.options());
    plan.pos_TK.index_put_({order_N}, torch::arange(order_N.size(0), order_N.options()));
    plan.pos_TK = plan.pos_TK.view({T, K});
  }
  return plan;
}

torch::Tensor permute_tokens(const torch::Tensor& x_TD, const PermutePlan& plan) {
  if (plan.pos_TK.defined() && fused_moe_applies(x_TD))
    return fused_permute(x_TD, plan.source_token_N, plan.pos_TK);
  return x_TD.index_select(0, plan.source_token_N);
}

torch::Tensor unpermute_tokens(const torch::Tensor& y_ND, const PermutePlan& plan) {
  if (plan.pos_TK.defined() && fused_moe_applies(y_ND)) {
    return fused_unpermute(y_ND, plan.weight_N, plan.source_token_N, plan.pos_TK);
  }
  auto weighted_ND = y_ND * plan.weight_N.to(y_ND.scalar_type()).unsqueeze(1);
  return torch::zeros({plan.num_tokens, y_ND.size(1)}, y_ND.options())
      .index_add(0, plan.source_token_N, weighted_ND);
}

}  // namespace moxie
