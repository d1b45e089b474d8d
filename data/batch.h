// Batch: what the trainer consumes, and BatchSource, what produces it. Kept
// small on purpose: the sharded multimodal pipeline replaces the source.
#pragma once

#include <torch/torch.h>

namespace moxie {

struct Batch {
  torch::Tensor tokens;     // int64 [B, S] inputs
  torch::Tensor targets;    // int64 [B, S] the next token at each position
  torch::Tensor loss_mask;  // float32 [B, S], 1 where the target counts
  int64_t num_tokens() const { return tokens.numel(); }
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual Batch next() = 0;
};

}  // namespace moxie
