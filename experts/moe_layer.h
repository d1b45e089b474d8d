// MoELayer: orchestrates router -> dispatcher -> experts -> combine, plus the
// optional shared experts. It computes nothing of its own.
#pragma once

#include <torch/torch.h>

#include <memory>

#include "experts/dispatcher.h"
#include "experts/experts.h"
#include "experts/options.h"
#include "experts/router.h"
#include "experts/swiglu.h"
#include "parallel/parallelize.h"

namespace moxie {

// What one MoE layer reports about one forward pass (all detached).
struct MoEStats {
  torch::Tensor tokens_per_expert_E;  // int64 [E] assignments before dropping
  torch::Tensor balance_loss;         // scalar, 1.0 = perfectly balanced
  int64_t assignments = 0;            // T * K
  int64_t dropped = 0;                // assignments removed by capacity
};

struct MoEOutput {
  torch::Tensor y;         // same shape as the input
  torch::Tensor aux_loss;  // scalar, already weighted by the configured coefficients
  MoEStats stats;
};

// Submodules: "gate" (Router), "experts" (Experts), and with shared experts
// "shared_expert" (SwiGLU) and "shared_expert_gate" (Linear D -> 1, sigmoid),
// as in Qwen-MoE.
class MoELayerImpl : public torch::nn::Module {
 public:
  // init_std: standard deviation of every weight's initial values (model.init_std).
  // parallel: experts over parallel.ep (make_dispatcher), balance statistics
  // over parallel.batch, shared experts split over parallel.tp.
  MoELayerImpl(int64_t d_model, const MoEOptions& options, const ModelParallel& parallel = {},
               double init_std = 0.02);

  // x: [..., D]; tokens are routed independently. With a capacity factor,
  // capacity groups are moe.capacity_group consecutive tokens, or with 0 and
  // x of [..., S, D], each sequence.
  MoEOutput forward(const torch::Tensor& x);

  Router gate{nullptr};
  Experts experts{nullptr};
  SwiGLU shared_expert{nullptr};
  torch::nn::Linear shared_expert_gate{nullptr};
  // Appends what this layer says of each of its parameters (named prefix + name).
  void describe(const std::string& prefix, std::vector<ParamSpec>& out) const;

 private:
  MoEOptions options_;
  std::shared_ptr<TokenDispatcher> dispatcher_;
};
TORCH_MODULE(MoELayer);

}  // namespace moxie
