// The training loop: batches -> forward -> loss -> backward (with gradient
// accumulation) -> clip -> AdamW -> router bias update -> metrics, with a
// periodic evaluation on held-out data.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <iosfwd>
#include <memory>
#include <ostream>
#include <vector>

#include "core/config/config.h"
#include "core/model/transformer.h"
#include "optim/adamw.h"
#include "parallel/grad_sync.h"
#include "parallel/zero.h"
#include "parallel/parallel_dims.h"
#include "parallel/process_groups.h"

namespace moxie {

struct TrainSummary {
  std::vector<double> train_losses;                       // one per step
  std::vector<std::pair<int64_t, double>> eval_losses;    // (step, loss)
  double unigram_entropy_nats = 0;                        // of the training corpus (text source)
  int64_t skipped_steps = 0;
  // Datasets with media (last evaluation): the loss on the text of samples
  // that hold an image (audio), and the same with the media blanked.
  std::pair<double, double> eval_image_loss{0, 0}, eval_audio_loss{0, 0};
  uint64_t skipped_samples = 0;  // damaged records skipped by this rank's loader
};

// Parameter groups by the usual rule: weight decay on matrices, none on norms,
// biases, the router's bias and (unless optim.decay_embeddings) embeddings.
// `keep` selects the parameters this rank updates (ZeRO-1); default: all.
// Frozen parameters (requires_grad false) get no group; with router_lr != 1
// the routers get a group of their own at that multiple of the learning rate.
std::vector<ParamGroup> make_param_groups(
    CausalLM& model, const OptimOptions& optim,
    const std::function<bool(const torch::Tensor&)>& keep = nullptr, double router_lr = 1.0);

// One process, or one rank of a job: `groups` come from the launcher (see
// launch/main.cpp) and must match config.parallel. Every rank computes; rank 0
// alone prints, writes config.yaml and metrics.jsonl.
class Trainer {
 public:
  // Validates the layout, prints the resolved config, creates train.run_dir
  // and saves config.yaml there.
  Trainer(const Config& config, std::ostream& log);  // one process
  Trainer(const Config& config, ProcessGroups groups, std::ostream& log);
  TrainSummary run();

  CausalLM& model() { return model_; }

 private:
  // Averages gradients over data-parallel ranks, clips by the global norm
  // (each parameter counted once), and returns the pre-clip norm.
  double sync_and_clip();

  Config config_;
  ProcessGroups groups_;
  ParallelDims dims_;
  bool rank0_;
  std::ostream& log_;
  torch::Device device_;  // train.device: CPU, or this rank's GPU
  CausalLM model_{nullptr};

  // Parameters by how they are laid out over ranks, each set with the group
  // its gradients are summed over and, for the norm, the group whose ranks
  // hold different parts of it (nullptr: equal everywhere, counted once).
  struct ParamSet {
    std::string what;
    std::vector<torch::Tensor> params;
    Communicator* sync_group = nullptr;
    Communicator* norm_group = nullptr;
    std::unique_ptr<GradientSync> sync;
    std::unique_ptr<Zero1Partition> zero;  // with parallel.zero1
  };
  std::vector<ParamSet> param_sets_;
  bool overlap_ = false;  // gradient all-reduce started during the last backward
};

}  // namespace moxie
