// Options of the Mixture-of-Experts layer: router, dispatcher, experts.
#pragma once

#include <cstdint>
#include <string>

namespace moxie {

struct MoEOptions {
  int64_t num_experts = 8;
  int64_t top_k = 2;
  int64_t expert_hidden = 256;          // SwiGLU hidden width of one expert
  std::string score_func = "softmax";   // softmax | sigmoid
  bool renormalize = true;              // top-k weights sum to 1
  double aux_loss_coef = 0.01;          // Switch-style load-balancing loss
  double z_loss_coef = 0.0;             // router z-loss
  double bias_update_rate = 0.0;        // auxiliary-loss-free balancing (DeepSeek-V3); 0: off
  double capacity_factor = 0.0;         // 0: dropless; else tokens per expert <= ceil(cf * T * K / E)
  std::string drop_policy = "probs";    // probs | position: which assignments survive over capacity
  // Tokens per capacity group (consecutive tokens of a sequence); 0: one whole
  // sequence. Under tensor (sequence) parallelism a group must fit in the
  // seq_len/tp tokens one rank routes.
  int64_t capacity_group = 0;
  int64_t num_shared_experts = 0;       // Qwen-MoE style, dense on every token
  int64_t shared_expert_hidden = 0;     // 0: expert_hidden * num_shared_experts
};

}  // namespace moxie
