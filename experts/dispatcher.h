// TokenDispatcher: moves routed tokens to the experts that own them and back.
// Following Megatron-Core, the communication-free pre/post steps (permutation,
// capacity) are separate from the one exchange, so an all-to-all dispatcher
// (expert parallelism) reuses them and overlap can be added later.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "experts/options.h"
#include "experts/permute.h"
#include "experts/router.h"
#include "parallel/communicator.h"
#include "parallel/differentiable.h"

namespace moxie {

// What dispatch hands to the experts, and what combine needs to undo it.
struct Dispatched {
  // Rows for this rank's experts, in consecutive segments: segment i holds
  // segment_rows[i] rows for local expert segment_experts[i] (empty: segment i
  // is expert i). Experts::forward takes them as they are.
  torch::Tensor tokens_ND;
  std::vector<int64_t> segment_rows;
  std::vector<int64_t> segment_experts;
  PermutePlan plan;  // this rank's permutation
  // Expert parallelism only: rows sent to / received from each EP rank.
  std::vector<int64_t> send_rows, recv_rows;
  // Set while tokens_ND is still arriving (TokenDispatcher::dispatch_async).
  std::shared_ptr<PendingOp> arriving;
  // Returns once tokens_ND holds its rows; a no-op after the first call.
  void wait() {
    if (!arriving) return;
    arriving->wait();
    arriving.reset();
  }
};

class TokenDispatcher {
 public:
  virtual ~TokenDispatcher() = default;
  // x_TD: this rank's tokens. Returns the rows this rank's experts must compute.
  // capacity_group: tokens per capacity group (one sequence), 0: all of x_TD.
  virtual Dispatched dispatch(const torch::Tensor& x_TD, const RouterOutput& routing,
                              int64_t capacity_group = 0) = 0;
  // dispatch that may return with the tokens still in flight, so that work not
  // needing them (the shared experts) overlaps the exchange: call
  // Dispatched::wait() before reading tokens_ND. Default: dispatch.
  virtual Dispatched dispatch_async(const torch::Tensor& x_TD, const RouterOutput& routing,
                                    int64_t capacity_group = 0) {
    return dispatch(x_TD, routing, capacity_group);
  }
  // expert_out_ND: Experts' output for dispatched.tokens_ND. Returns [T, D].
  virtual torch::Tensor combine(const torch::Tensor& expert_out_ND,
                                const Dispatched& dispatched) = 0;
  virtual int64_t num_local_experts() const = 0;
  virtual int64_t first_local_expert() const { return 0; }  // global id of local expert 0
};

// Every expert lives on this rank: permute, compute, unpermute.
class LocalTokenDispatcher : public TokenDispatcher {
 public:
  explicit LocalTokenDispatcher(const MoEOptions& options);
  Dispatched dispatch(const torch::Tensor& x_TD, const RouterOutput& routing,
                      int64_t capacity_group = 0) override;
  torch::Tensor combine(const torch::Tensor& expert_out_ND, const Dispatched& dispatched) override;
  int64_t num_local_experts() const override { return options_.num_experts; }

 private:
  MoEOptions options_;
};

// Experts are split over the EP group: rank i holds experts
// [i * E / ep, (i + 1) * E / ep). Tokens travel to their experts' ranks by
// all-to-all and come back the same way; every step is differentiable.
// Received rows stay grouped by source rank, then expert: one segment per
// (source, local expert), so no regrouping pass is needed either way.
// The permutation writes straight into the send buffer and the weighted
// unpermutation reads straight from the receive buffer; the count exchange
// runs while the tokens are permuted. Exchange buffers are reused from one
// call to the next once nothing (a graph awaiting backward) reads them.
class AllToAllTokenDispatcher : public TokenDispatcher {
 public:
  // ep_group must outlive the dispatcher and every backward pass through it.
  AllToAllTokenDispatcher(const MoEOptions& options, Communicator& ep_group);
  Dispatched dispatch(const torch::Tensor& x_TD, const RouterOutput& routing,
                      int64_t capacity_group = 0) override;
  Dispatched dispatch_async(const torch::Tensor& x_TD, const RouterOutput& routing,
                            int64_t capacity_group = 0) override;
  torch::Tensor combine(const torch::Tensor& expert_out_ND, const Dispatched& dispatched) override;
  int64_t num_local_experts() const override { return options_.num_experts / ep_group_.size(); }
  int64_t first_local_expert() const override { return ep_group_.rank() * num_local_experts(); }

 private:
  MoEOptions options_;
  Communicator& ep_group_;
  ReusableBuffer send_buffer_, recv_buffer_, home_buffer_;
};

// The dispatcher for an EP group: all-to-all over ep_group when it has more
// than one rank, else local. ep_group must outlive the dispatcher.
std::shared_ptr<TokenDispatcher> make_dispatcher(const MoEOptions& options, Communicator* ep_group);

// The permutation both dispatchers start from: capacity per group, drop policy.
PermutePlan plan_routing(const MoEOptions& options, const RouterOutput& routing, int64_t num_tokens,
                         int64_t capacity_group);

}  // namespace moxie
