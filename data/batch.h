// Batch: what the trainer consumes, and BatchSource, what produces it.
#pragma once

#include <torch/torch.h>

namespace moxie {

struct Batch {
  torch::Tensor tokens;     // int64 [B, S] inputs
  torch::Tensor targets;    // int64 [B, S] the next token at each position
  torch::Tensor loss_mask;  // float32 [B, S], 1 where the target counts
  // Packed batches (data/dataset_source.h); undefined for the text source.
  torch::Tensor doc;                               // int64 [B, S]: document per position
  torch::Tensor patches, patch_slot, patch_index;  // see core/transformer.h ModelInputs
  torch::Tensor frames, frame_slot, frame_index;
  int64_t num_tokens() const { return tokens.numel(); }

  // The same batch on `device` (itself when it is there already).
  Batch to(const torch::Device& device) const {
    if (tokens.device() == device) return *this;
    auto on = [&](const torch::Tensor& t) { return t.defined() ? t.to(device) : t; };
    return {on(tokens), on(targets),     on(loss_mask),   on(doc),          on(patches),
            on(patch_slot), on(patch_index), on(frames), on(frame_slot), on(frame_index)};
  }
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual Batch next() = 0;
};

}  // namespace moxie
