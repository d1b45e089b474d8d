// Router: token -> expert scores -> top-k experts and combine weights, plus the
// load-balancing signals (Switch-style aux loss, z-loss, aux-loss-free bias).
#pragma once

#include <torch/torch.h>

#include "experts/options.h"
#include "parallel/communicator.h"
#include "parallel/param_layout.h"

namespace moxie {

struct RouterOutput {
  torch::Tensor expert_idx_TK;  // int64 [T, K] chosen experts
  torch::Tensor weight_TK;      // float32 [T, K] combine weights (differentiable)
  torch::Tensor aux_loss;       // scalar: aux_loss_coef * balance loss + z_loss_coef * z-loss
  torch::Tensor balance_loss;   // scalar, unweighted and detached, for metrics (1.0 = balanced)
  torch::Tensor tokens_per_expert_E;  // int64 [E] assignments per expert before capacity dropping
};

// The router's weight is registered as "weight" ([E, D], HF Mixtral `gate.weight`).
// The aux-loss-free bias is the buffer "e_score_correction_bias" (DeepSeek-V3 name):
// it shifts which experts are *selected*, never the combine weights.
class RouterImpl : public torch::nn::Module {
 public:
  // balance_group: ranks whose tokens form one batch; the balance loss counts
  // expert fractions over all of them, so its value and gradient averaged over
  // the group equal the single-process ones. nullptr: this rank's tokens.
  RouterImpl(int64_t d_model, const MoEOptions& options, Communicator* balance_group = nullptr,
             double init_std = 0.02);

  // x_TD: [T, D] in any float dtype. Scores are computed in at least float32.
  RouterOutput forward(const torch::Tensor& x_TD);

  // Aux-loss-free balancing: after an optimizer step, move each expert's bias by
  // bias_update_rate toward the mean load (+ for under-loaded, - for over-loaded).
  // load_E: assignments per expert accumulated over the step. No-op when the rate is 0.
  void update_bias(const torch::Tensor& load_E);

  torch::Tensor weight;  // [E, D]
  torch::Tensor bias_E;  // [E], float32 buffer

  // LoRA on the router: weight + alpha/rank * lora_B [E, rank] @ lora_A
  // [rank, D] (A drawn, B zero; both replicated like the weight).
  void add_lora(int64_t rank, double alpha);
  void merge_lora();  // folds it into the weight and zeroes B, for export
  torch::Tensor lora_A, lora_B;
  // The weight and its adapter, all replicated and of the router's role.
  void describe(const std::string& prefix, std::vector<ParamSpec>& out) const;

 private:
  torch::Tensor effective_weight() const;
  double lora_scale_ = 0;
  MoEOptions options_;
  Communicator* balance_group_;
};
TORCH_MODULE(Router);

// Switch-style load-balancing loss, normalised so perfect balance gives 1:
//   E / K * sum_e f_e * P_e,  f_e = tokens choosing e / T,  P_e = mean_t prob_te.
// probs_TE rows sum to 1; gradients flow through probs only. f_e may be counted
// over more tokens than probs_TE holds (num_tokens > T: a data-parallel batch).
torch::Tensor switch_balance_loss(const torch::Tensor& probs_TE,
                                  const torch::Tensor& tokens_per_expert_E, int64_t top_k,
                                  int64_t num_tokens = 0);

}  // namespace moxie
