// Token permutation: lays the T*K (token, expert) assignments out expert-major,
// drops assignments over capacity, and brings expert outputs back to tokens.
// Communication-free: the all-to-all dispatcher wraps these with its exchange.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "experts/options.h"

namespace moxie {

// Capacity per expert: ceil(capacity_factor * T * K / E); <= 0 means dropless.
int64_t expert_capacity(double capacity_factor, int64_t num_tokens, int64_t top_k,
                        int64_t num_experts);

struct PermutePlan {
  torch::Tensor source_token_N;       // int64 [N]: the token each permuted row copies
  torch::Tensor weight_N;             // [N] combine weight of each row (keeps the router's graph)
  torch::Tensor tokens_per_expert_E;  // int64 [E] rows per expert, after dropping
  std::vector<int64_t> counts;        // the same, on the host (segment sizes)
  // int64 [T, K]: the row of each (token, choice) assignment, -1 where
  // dropped; set on the CPU (the token-major combine below) and where the
  // fused kernels take the tensors (experts/fused.h).
  torch::Tensor pos_TK;
  int64_t num_tokens = 0;  // T
  int64_t dropped = 0;     // assignments removed by capacity
};

// expert_idx_TK: int64 [T, K]; weight_TK: [T, K]. Rows come out grouped by
// expert in increasing id, and in token order within an expert. Dropless on
// the CPU this is one counting sort over the expert ids (no argsort of T*K).
// With a capacity, tokens form groups of group_tokens consecutive tokens (0:
// one group of all T), and each expert keeps at most `capacity` assignments per
// group: the highest-weight (kProbs) or earliest (kPosition) ones. Groups of one
// sequence make dropping independent of how sequences are spread over ranks.
PermutePlan make_permute_plan(const torch::Tensor& expert_idx_TK, const torch::Tensor& weight_TK,
                              int64_t num_experts, int64_t capacity, DropPolicy policy,
                              int64_t group_tokens = 0);

// [T, D] -> [N, D]: row n is x[source_token_N[n]].
torch::Tensor permute_tokens(const torch::Tensor& x_TD, const PermutePlan& plan);

// [N, D] -> [T, D]: token t gets sum over its rows of weight_N[n] * y[n]; a
// dropped assignment contributes nothing (its weight is not redistributed).
// On the CPU (float32/float64) the weighting is fused into one token-major
// gather: no [N, D] weighted copy, no zero-filled scatter target.
torch::Tensor unpermute_tokens(const torch::Tensor& y_ND, const PermutePlan& plan);

}  // namespace moxie
