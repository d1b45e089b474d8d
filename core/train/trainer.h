// The training loop: batches -> TrainStep (forward and backward over the
// step's micro-batches) -> gradient sync and clipping -> AdamW -> router bias
// update -> metrics through MetricSinks, with periodic evaluation and
// checkpoints. The pieces live beside it: train_step.h (objectives),
// gradients.h, evaluate.h, run_checkpoints.h, metric_sink.h, faults.h.
#pragma once

#include <torch/torch.h>

#include <iosfwd>
#include <memory>
#include <ostream>
#include <vector>

#include "core/config/config.h"
#include "core/model/transformer.h"
#include "core/train/gradients.h"
#include "core/train/metric_sink.h"
#include "core/train/param_groups.h"
#include "core/train/train_step.h"
#include "parallel/param_layout.h"
#include "parallel/process_groups.h"

namespace moxie {

struct TrainSummary {
  std::vector<double> train_losses;                     // one per step
  std::vector<std::pair<int64_t, double>> eval_losses;  // (step, loss)
  double unigram_entropy_nats = 0;                      // of the training corpus (text source)
  int64_t skipped_steps = 0;
  // Datasets with media (last evaluation): the loss on the text of samples
  // that hold an image (audio), and the same with the media blanked.
  std::pair<double, double> eval_image_loss{0, 0}, eval_audio_loss{0, 0};
  uint64_t skipped_samples = 0;  // damaged records skipped by this rank's loader
};

// One process, or one rank of a job: `groups` come from the launcher (see
// launch/) and carry the validated layout of config.parallel. Every rank
// computes; rank 0 alone prints, writes config.yaml and metrics.jsonl.
class Trainer {
 public:
  // Prints the resolved config, creates train.run_dir and saves config.yaml
  // there, builds the model as parallelize() lays it out.
  Trainer(const Config& config, std::ostream& log);  // one process (validates the layout)
  Trainer(const Config& config, ProcessGroups groups, std::ostream& log);
  TrainSummary run();

  CausalLM& model() { return model_; }
  // Every parameter's layout, in named_parameters() order.
  const std::vector<ParamLayout>& layouts() const { return layouts_; }

 private:
  struct Loop;  // one run's state (trainer.cpp)
  void write_run_folder();
  void adopt_dataset_shapes();
  void build_model();
  void make_layouts();
  // One optimizer step (0-based `step`): its metrics, with the update applied
  // unless the loss or gradient is not finite.
  StepMetrics train_one_step(Loop& loop, int64_t step);
  void evaluate_at(Loop& loop, int64_t step);
  // After step `step`: evaluation, early stopping, checkpoints and stops.
  // False when the run ends here.
  bool after_step(Loop& loop, int64_t step);
  void finish(Loop& loop);

  Config config_;
  ProcessGroups groups_;
  bool rank0_;
  std::ostream& log_;
  torch::Device device_;  // train.device: CPU, or this rank's GPU
  CausalLM model_{nullptr};
  std::vector<torch::Tensor> params_;  // named_parameters() order
  std::vector<ParamLayout> layouts_;   // one per parameter
  std::unique_ptr<Gradients> gradients_;
  std::unique_ptr<TrainStep> step_;
};

}  // namespace moxie
