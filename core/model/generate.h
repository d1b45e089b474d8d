// Text generation from a model on one process: greedy or sampled (temperature,
// nucleus top-p), with a KV cache where the model allows one.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "core/model/transformer.h"

namespace moxie {

struct GenerateOptions {
  int64_t max_new = 32;
  double temperature = 0;  // 0: greedy
  double top_p = 1.0;
  uint64_t seed = 0;
  int64_t stop_token = -1;  // generation ends after it; -1: none
  bool use_cache = true;    // false: a full forward of the context per token
};
// The prompt followed by up to max_new tokens. With the KV cache the prompt
// is run once and each new token alone (not under capacity dropping, where a
// token's output depends on the others); past model.max_seq_len the context
// is cut to the last max_seq_len tokens and recomputed each step.
std::vector<int64_t> generate(CausalLM& model, std::vector<int64_t> tokens,
                              const GenerateOptions& options);

}  // namespace moxie
