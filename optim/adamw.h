// AdamW (decoupled weight decay, PyTorch's formula) over parameter groups,
// with fp32 master weights for parameters held in a lower precision.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "optim/options.h"

namespace moxie {

struct ParamGroup {
  std::string name;
  std::vector<torch::Tensor> params;
  double weight_decay = 0.0;
  double lr_scale = 1.0;  // this group's lr = schedule lr * lr_scale
};

// Owns the optimizer state; shares storage with the parameters it is given
// and updates them in place. Every parameter must be contiguous and float32,
// float64 or a reduced float type (bfloat16, float16).
class AdamW {
 public:
  // Per-parameter state. `master` is defined only for parameters that are not
  // float32/float64: the update happens in fp32 there and is rounded into the
  // parameter afterwards, so updates below the parameter's resolution add up.
  // exp_avg and exp_avg_sq have the dtype of `master` if defined, else of the
  // parameter.
  struct ParamState {
    torch::Tensor exp_avg, exp_avg_sq, master;
    int64_t step = 0;  // updates this parameter has received
  };

  // Throws std::invalid_argument naming the group and index of a parameter
  // that is undefined, not floating point or not contiguous.
  AdamW(std::vector<ParamGroup> groups, const OptimOptions& options);

  // One update from each parameter's .grad() with learning rate `lr` (times
  // the group's lr_scale). Parameters whose grad is undefined are skipped and
  // their step count does not advance. Grads are read, never modified.
  void step(double lr);
  // Drops every gradient (set-to-none).
  void zero_grad();

  // Calls of step(), whether or not any parameter had a gradient.
  int64_t steps_taken() const { return steps_taken_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  const ParamState& state(size_t group, size_t index) const { return state_.at(group).at(index); }

  // Restoring from a checkpoint: the moments and master weights are written
  // in place (state()'s tensors); these set the counters.
  void set_step(size_t group, size_t index, int64_t step);
  void set_steps_taken(int64_t steps) { steps_taken_ = steps; }

 private:
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<ParamState>> state_;
  // ParamState::step again, as the fused kernel reads it: a float32 scalar
  // on the parameter's device (exact up to 2^24 steps).
  std::vector<std::vector<torch::Tensor>> step_tensors_;
  OptimOptions options_;
  int64_t steps_taken_ = 0;
};

// One multi-tensor AdamW update (PyTorch's formula) of float32 `weights`,
// in place, with their moments, from `grads` of float32 or bfloat16 (read in
// their dtype, never copied); where lowps[i] is defined, the updated weight is
// also rounded into it (a bfloat16 parameter of an fp32 master). steps[i]:
// that parameter's step count after this update (>= 1). CUDA tensors: one
// launch of moxie's kernel (optim/cuda); CPU tensors: its host form, the same
// arithmetic, which the tests hold to ATen's _fused_adamw_.
void multi_tensor_adamw(const std::vector<torch::Tensor>& weights,
                        const std::vector<torch::Tensor>& grads,
                        const std::vector<torch::Tensor>& exp_avgs,
                        const std::vector<torch::Tensor>& exp_avg_sqs,
                        const std::vector<torch::Tensor>& lowps, const std::vector<int64_t>& steps,
                        double lr, double weight_decay, const OptimOptions& options);

}  // namespace moxie
