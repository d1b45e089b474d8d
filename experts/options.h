// Options of the Mixture-of-Experts layer: router, dispatcher, experts.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace moxie {

// Each choice's names, in the enum's order, are the values its config key
// takes (core/config/config.cpp reads them, core/config/config_to_yaml.cpp writes them).

// How router logits become scores.
enum class ScoreFunc { kSoftmax, kSigmoid };
constexpr std::array<const char*, 2> enum_names(ScoreFunc) { return {"softmax", "sigmoid"}; }
inline const char* to_string(ScoreFunc v) { return enum_names(v)[static_cast<size_t>(v)]; }

// Which assignments survive when an expert is over capacity: those with the
// highest routing weight, or the earliest tokens.
enum class DropPolicy { kProbs, kPosition };
constexpr std::array<const char*, 2> enum_names(DropPolicy) { return {"probs", "position"}; }
inline const char* to_string(DropPolicy v) { return enum_names(v)[static_cast<size_t>(v)]; }

struct MoEOptions {
  int64_t num_experts = 8;
  int64_t top_k = 2;
  int64_t expert_hidden = 256;  // SwiGLU hidden width of one expert
  ScoreFunc score_func = ScoreFunc::kSoftmax;
  bool renormalize = true;        // top-k weights sum to 1
  double aux_loss_coef = 0.01;    // Switch-style load-balancing loss
  double z_loss_coef = 0.0;       // router z-loss
  double bias_update_rate = 0.0;  // auxiliary-loss-free balancing (DeepSeek-V3); 0: off
  double capacity_factor = 0.0;   // 0: dropless; else tokens per expert <= ceil(cf * T * K / E)
  DropPolicy drop_policy = DropPolicy::kProbs;  // used when capacity_factor > 0
  // Tokens per capacity group (consecutive tokens of a sequence); 0: one whole
  // sequence. Under tensor (sequence) parallelism a group must fit in the
  // seq_len/tp tokens one rank routes.
  int64_t capacity_group = 0;
  int64_t num_shared_experts = 0;    // Qwen-MoE style, dense on every token
  int64_t shared_expert_hidden = 0;  // 0: expert_hidden * num_shared_experts
};

}  // namespace moxie
