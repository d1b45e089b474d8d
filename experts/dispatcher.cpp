// Local token dispatcher.
#include "experts/dispatcher.h"

#include <stdexcept>

namespace moxie {

DropPolicy parse_drop_policy(const std::string& name) {
  if (name == "probs") return DropPolicy::kProbs;
  if (name == "position") return DropPolicy::kPosition;
  throw std::invalid_argument("moe.drop_policy '" + name + "' is not one of: probs, position");
}

LocalTokenDispatcher::LocalTokenDispatcher(const MoEOptions& options) : options_(options) {}

Dispatched LocalTokenDispatcher::dispatch(const torch::Tensor& x_TD, const RouterOutput& routing) {
  const int64_t capacity = expert_capacity(options_.capacity_factor, x_TD.size(0),
                                           options_.top_k, options_.num_experts);
  Dispatched out;
  out.plan = make_permute_plan(routing.expert_idx_TK, routing.weight_TK, options_.num_experts,
                               capacity, parse_drop_policy(options_.drop_policy));
  out.tokens_ND = permute_tokens(x_TD, out.plan);
  out.tokens_per_local_expert = out.plan.counts;
  return out;
}

torch::Tensor LocalTokenDispatcher::combine(const torch::Tensor& expert_out_ND,
                                            const Dispatched& dispatched) {
  return unpermute_tokens(expert_out_ND, dispatched.plan);
}

}  // namespace moxie
