// The objectives a run can train, by name.
#include "core/train/train_step.h"

#include <stdexcept>

namespace moxie {

std::unique_ptr<TrainStep> make_train_step(const Config& config) {
  // One line per objective. Fine-tuning methods that change the objective
  // (finetune.method: dpo, grpo) will select theirs here.
  return make_language_model_step();
}

}  // namespace moxie
