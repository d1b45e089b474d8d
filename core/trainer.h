// The training loop: batches -> forward -> loss -> backward (with gradient
// accumulation) -> clip -> AdamW -> router bias update -> metrics, with a
// periodic evaluation on held-out data.
#pragma once

#include <torch/torch.h>

#include <iosfwd>
#include <memory>
#include <vector>

#include "core/config.h"
#include "core/transformer.h"
#include "optim/adamw.h"

namespace moxie {

struct TrainSummary {
  std::vector<double> train_losses;                       // one per step
  std::vector<std::pair<int64_t, double>> eval_losses;    // (step, loss)
  double unigram_entropy_nats = 0;                        // of the training corpus
  int64_t skipped_steps = 0;
};

// Parameter groups by the usual rule: weight decay on matrices, none on norms,
// biases, the router's bias and (unless optim.decay_embeddings) embeddings.
std::vector<ParamGroup> make_param_groups(CausalLM& model, const OptimOptions& optim);

class Trainer {
 public:
  // Prints the resolved config, creates train.run_dir and saves config.yaml there.
  Trainer(const Config& config, std::ostream& log);
  TrainSummary run();

  CausalLM& model() { return model_; }

 private:
  Config config_;
  std::ostream& log_;
  CausalLM model_{nullptr};
};

}  // namespace moxie
