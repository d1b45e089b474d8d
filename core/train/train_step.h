// TrainStep: one optimizer step's forward and backward passes for a training
// objective. The loop (core/train/trainer.cpp) fetches the step's
// micro-batches, hands them to the step, then syncs gradients, clips, updates
// and reports; an objective (language modelling today; preference and RL
// objectives next) is one new TrainStep in its own file and one line in
// make_train_step (train_step.cpp).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/config/config.h"
#include "core/model/transformer.h"
#include "data/batch.h"
#include "parallel/process_groups.h"

namespace moxie {

// What a step's passes report, already reduced over the global batch (every
// rank holds the same values).
struct StepReport {
  double loss = 0;      // the objective's loss, the mean over the global batch
  double aux_loss = 0;  // weighted router losses, summed over layers, mean over micro-batches
  double balance = 0;   // unweighted balance losses, summed over layers and micro-batches
  int64_t tokens = 0;   // input tokens on this rank
  int64_t assignments = 0, dropped = 0;  // routed assignments, and those dropped by capacity
  // Per MoE layer: assignments per expert over the global batch (int64 [E]).
  std::vector<torch::Tensor> tokens_per_expert_LE;
  // Objective-specific metrics (name, value), written beside the common ones.
  std::vector<std::pair<std::string, double>> extra;
};

// What a step works with. The model's gradients accumulate in its
// parameters; the loop owns everything here.
struct StepContext {
  CausalLM& model;
  const Config& config;
  const ProcessGroups& groups;
  torch::Device device;
  // Called just before the backward pass of the step's last micro-batch
  // (gradient sync overlapped with backward arms there).
  std::function<void()> before_last_backward;
  // Fault injection: the step's loss is made NaN.
  bool poison_loss = false;
};

class TrainStep {
 public:
  virtual ~TrainStep() = default;
  // micro_batches: this rank's share of the step's global batch, on the host.
  // Runs forward and backward over each, leaving gradients scaled so that
  // the data-parallel average (GradientSync) is the objective's gradient.
  // Collective: every rank calls it with the same number of micro-batches.
  virtual StepReport forward_backward(const std::vector<Batch>& micro_batches,
                                      StepContext& context) = 0;
};

// What the model reads of a batch; blank_media: images and audio zeroed
// (evaluation of what the media add).
ModelInputs model_inputs(const Batch& batch, bool blank_media = false);

// The language model's step: next-token cross-entropy over the loss mask,
// the mean over every counted target of the global batch, plus router aux losses.
std::unique_ptr<TrainStep> make_language_model_step();

// The step for the config's objective.
std::unique_ptr<TrainStep> make_train_step(const Config& config);

}  // namespace moxie
