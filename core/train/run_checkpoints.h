// A run's checkpoints: this rank's boxes of every tensor it holds (from the
// parameters' layouts), the counters and RNG and data-stream state beside
// them, loading a fine-tuning base, resuming (falling back to an older
// committed checkpoint when the newest cannot be read), and saving in the
// background with the commit once every rank's write has ended. Every
// decision is taken alike on every rank.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "core/checkpoint/checkpoint.h"
#include "core/config/config.h"
#include "core/model/transformer.h"
#include "data/batch.h"
#include "optim/adamw.h"
#include "parallel/param_layout.h"
#include "parallel/process_groups.h"

namespace moxie {

// The loop's counters a checkpoint holds beside the tensors.
struct RunCounters {
  int64_t step = 0;  // steps done
  int64_t bad_in_a_row = 0;
  int64_t skipped_steps = 0;
};

// train.resume names a checkpoint that cannot exist: throws before any data is read.
void check_resume_target(const TrainOptions& train);

class RunCheckpoints {
 public:
  // Everything must outlive this object. layouts[i] is the layout of the
  // model's i-th parameter (named_parameters order).
  RunCheckpoints(const Config& config, const ProcessGroups& groups, CausalLM& model,
                 const std::vector<ParamLayout>& layouts, AdamW& optimizer, std::ostream& log);

  // finetune.base's weights (every one but the adapters), at any layout; no-op without one.
  void load_base();
  // train.resume: loads the newest loadable committed checkpoint into the
  // model, optimizer, RNG and `source`; returns its counters (zeros: none).
  RunCounters resume(BatchSource& source);

  // Saving (train.checkpoint_every > 0). commit_if_written: after each step,
  // commits a background save whose write has ended on every rank.
  void commit_if_written();
  // Commits the previous save if still pending, then starts this one.
  void save(int64_t steps_done, const RunCounters& counters, const BatchSource& source,
            bool background);
  // Waits for the write in flight on every rank; rank 0 then commits it.
  void commit_pending();

 private:
  // base_weights: only what a base checkpoint holds (every parameter but the adapters).
  std::vector<CheckpointEntry> entries(bool base_weights);
  std::map<std::string, std::string> rank_state(const RunCounters& counters,
                                                const BatchSource& source) const;
  bool any_rank_failed(const std::string& error) const;
  void masters_follow_parameters();

  const Config& config_;
  const ProcessGroups& groups_;
  CausalLM& model_;
  const std::vector<ParamLayout>& layouts_;
  AdamW& optimizer_;
  std::ostream& log_;
  CheckpointWriter writer_;
  // Filled by entries(): the per-parameter step counts a load restores.
  std::vector<std::tuple<size_t, size_t, torch::Tensor>> optimizer_steps_;
};

}  // namespace moxie
