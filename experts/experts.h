// Experts: this rank's local experts, each a SwiGLU MLP, computed together over
// contiguous token segments (one grouped op, not a loop over a one-hot mask).
#pragma once

#include <torch/torch.h>

#include <vector>

#include "parallel/tensor_parallel.h"

namespace moxie {

// Weights are stacked per expert so that expert parallelism shards them along
// dim 0. Registered as "w13" [E, 2H, D] (HF w1 then w3 along dim 1) and "w2"
// [E, D, H]; core/checkpoint/hf_interop maps them to Hugging Face's per-expert names.
// Initialisation is layout-independent: global expert e is drawn from its own
// generator seeded with (one draw from the global generator) + e, so a rank
// holding experts [first, first + n) gets exactly the single-process values
// and never allocates the other ranks' experts.
class ExpertsImpl : public torch::nn::Module {
 public:
  ExpertsImpl(int64_t num_local_experts, int64_t d_model, int64_t hidden, int64_t first_expert = 0,
              double init_std = 0.02);

  // x_ND: consecutive row segments of segment_rows[i] rows, segment i for local
  // expert segment_experts[i] (empty: segment i is expert i). See grouped_swiglu.
  torch::Tensor forward(const torch::Tensor& x_ND, const std::vector<int64_t>& segment_rows,
                        const std::vector<int64_t>& segment_experts = {});

  int64_t num_experts() const { return w13.size(0); }
  int64_t hidden() const { return w2.size(2); }

  torch::Tensor w13;
  torch::Tensor w2;

  // LoRA per expert on w13 (gate and up projections together, as Hugging
  // Face's fused gate_up_proj) and/or w2: w + alpha/rank * B_e @ A_e, with
  // "w13_lora_A" [E, rank, D], "w13_lora_B" [E, 2H, rank] (and "w2_lora_*"),
  // split over EP like the experts; A drawn per expert (the same values at
  // any layout), B zero. Applied as an adapted weight per step.
  void add_lora(bool w13_on, bool w2_on, int64_t rank, double alpha);
  void merge_lora();  // folds them into w13/w2 and zeroes B, for export
  torch::Tensor w13_lora_A, w13_lora_B, w2_lora_A, w2_lora_B;
  // Every parameter is an expert's, stacked on dim 0 (split over EP).
  void describe(const std::string& prefix, std::vector<ParamSpec>& out) const;

 private:
  int64_t first_expert_ = 0;
  double lora_scale_ = 0;
};
TORCH_MODULE(Experts);

}  // namespace moxie
