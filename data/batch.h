// Batch: what the trainer consumes, and BatchSource, what produces it.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace moxie {

struct Batch {
  torch::Tensor tokens;     // int64 [B, S] inputs
  torch::Tensor targets;    // int64 [B, S] the next token at each position
  torch::Tensor loss_mask;  // float32 [B, S], 1 where the target counts
  // Packed batches (data/dataset_source.h); undefined for the text source.
  torch::Tensor doc;                               // int64 [B, S]: document per position
  torch::Tensor patches, patch_slot, patch_index;  // see core/model/transformer.h ModelInputs
  torch::Tensor frames, frame_slot, frame_index;
  int64_t num_tokens() const { return tokens.numel(); }

  // The same batch on `device` (itself when it is there already).
  Batch to(const torch::Device& device) const {
    if (tokens.device() == device) return *this;
    auto on = [&](const torch::Tensor& t) { return t.defined() ? t.to(device) : t; };
    return {on(tokens),     on(targets),     on(loss_mask), on(doc),        on(patches),
            on(patch_slot), on(patch_index), on(frames),    on(frame_slot), on(frame_index)};
  }
};

// A stream of batches for one rank. Every source can say where it is and
// continue from there, so the trainer checkpoints any source the same way.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual Batch next() = 0;
  // Where the stream is, as one line of text for a checkpoint; restore()
  // continues from such a line (throws naming what does not parse).
  virtual std::string state() const = 0;
  virtual void restore(const std::string& state) = 0;
  // The batches of training step `step` (1-based) have all been taken:
  // e.g. the step's place in the stream is recorded as its provenance.
  virtual void step_done(int64_t step) {}
  // Damaged samples skipped so far by this rank's reader.
  virtual uint64_t skipped() const { return 0; }
};

}  // namespace moxie
