// Local token dispatcher.
#include "experts/dispatcher.h"

#include <stdexcept>

#include "parallel/differentiable.h"

namespace moxie {

PermutePlan plan_routing(const MoEOptions& options, const RouterOutput& routing, int64_t num_tokens,
                         int64_t capacity_group) {
  const int64_t group = capacity_group > 0 ? capacity_group : num_tokens;
  const int64_t capacity =
      expert_capacity(options.capacity_factor, group, options.top_k, options.num_experts);
  return make_permute_plan(routing.expert_idx_TK, routing.weight_TK, options.num_experts, capacity,
                           options.drop_policy, group);
}

LocalTokenDispatcher::LocalTokenDispatcher(const MoEOptions& options) : options_(options) {}

Dispatched LocalTokenDispatcher::dispatch(const torch::Tensor& x_TD, const RouterOutput& routing,
                                          int64_t capacity_group) {
  Dispatched out;
  out.plan = plan_routing(options_, routing, x_TD.size(0), capacity_group);
  out.tokens_ND = permute_tokens(x_TD, out.plan);
  out.segment_rows = out.plan.counts;
  return out;
}

torch::Tensor LocalTokenDispatcher::combine(const torch::Tensor& expert_out_ND,
                                            const Dispatched& dispatched) {
  return unpermute_tokens(expert_out_ND, dispatched.plan);
}

AllToAllTokenDispatcher::AllToAllTokenDispatcher(const MoEOptions& options, Communicator& ep_group)
    : options_(options), ep_group_(ep_group) {
  if (options.num_experts % ep_group.size() != 0) {
    throw std::invalid_argument("moe.num_experts=" + std::to_string(options.num_experts) +
                                " is not divisible by the expert-parallel size " +
                                std::to_string(ep_group.size()));
  }
}

Dispatched AllToAllTokenDispatcher::dispatch(const torch::Tensor& x_TD, const RouterOutput& routing,
                                             int64_t capacity_group) {
  const int ep = ep_group_.size();
  const int64_t local = num_local_experts();
  Dispatched out;
  out.plan = plan_routing(options_, routing, x_TD.size(0), capacity_group);
  auto permuted_ND = permute_tokens(x_TD, out.plan);

  // Who sends how many rows for which expert: [ep (source), local experts].
  auto counts_sent = out.plan.tokens_per_expert_E.view({ep, local}).contiguous();
  auto counts_recv =
      ep_group_.all_to_all(counts_sent, std::vector<int64_t>(ep, 1), std::vector<int64_t>(ep, 1));
  out.send_rows.resize(ep);
  out.recv_rows.resize(ep);
  for (int p = 0; p < ep; ++p) {
    out.send_rows[p] = counts_sent[p].sum().item<int64_t>();
    out.recv_rows[p] = counts_recv[p].sum().item<int64_t>();
  }
  out.tokens_ND = differentiable_all_to_all(ep_group_, permuted_ND, out.send_rows, out.recv_rows);
  // Rows arrive grouped by source rank, then local expert.
  auto recv = counts_recv.to(torch::kCPU).contiguous();
  const int64_t* c = recv.data_ptr<int64_t>();
  out.segment_rows.assign(c, c + ep * local);
  for (int p = 0; p < ep; ++p) {
    for (int64_t e = 0; e < local; ++e) out.segment_experts.push_back(e);
  }
  return out;
}

torch::Tensor AllToAllTokenDispatcher::combine(const torch::Tensor& expert_out_ND,
                                               const Dispatched& dispatched) {
  // Send rows home the way they came, then unpermute.
  auto home = differentiable_all_to_all(ep_group_, expert_out_ND, dispatched.recv_rows,
                                        dispatched.send_rows);
  return unpermute_tokens(home, dispatched.plan);
}

std::shared_ptr<TokenDispatcher> make_dispatcher(const MoEOptions& options,
                                                 Communicator* ep_group) {
  if (ep_group && ep_group->size() > 1)
    return std::make_shared<AllToAllTokenDispatcher>(options, *ep_group);
  return std::make_shared<LocalTokenDispatcher>(options);
}

}  // namespace moxie
