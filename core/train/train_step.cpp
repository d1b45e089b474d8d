// The objectives a run can train, by name.
#include "core/train/train_step.h"

#include <stdexcept>

namespace moxie {

ModelInputs model_inputs(const Batch& b, bool blank_media) {
  ModelInputs in;
  in.tokens = b.tokens;
  in.doc = b.doc;
  in.patches = blank_media && b.patches.defined() ? torch::zeros_like(b.patches) : b.patches;
  in.patch_slot = b.patch_slot;
  in.patch_index = b.patch_index;
  in.frames = blank_media && b.frames.defined() ? torch::zeros_like(b.frames) : b.frames;
  in.frame_slot = b.frame_slot;
  in.frame_index = b.frame_index;
  return in;
}

std::unique_ptr<TrainStep> make_train_step(const Config& config) {
  // One line per objective. Fine-tuning methods that change the objective
  // (finetune.method: dpo, grpo) will select theirs here.
  return make_language_model_step();
}

}  // namespace moxie
