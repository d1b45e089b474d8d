// The dense SwiGLU MLP, tensor-parallel, with moxie's fused SwiGLU on CUDA
// tensors. It lives beside the experts because MoE layers' shared experts
// are SwiGLUs and experts/ may not include core/model; the model's dense FFN
// layers use it from here.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "parallel/param_layout.h"
#include "parallel/tensor_parallel.h"

namespace moxie {

// Dense SwiGLU MLP with Llama/Qwen names: gate_proj, up_proj, down_proj. Used
// for dense FFN layers and for shared experts. Under tensor parallelism the
// hidden width is split (gate/up column-parallel, down row-parallel): each
// rank's tokens are gathered from the TP group, and the partial outputs are
// reduce-scattered back, so every rank keeps its own tokens.
class SwiGLUImpl : public torch::nn::Module {
 public:
  SwiGLUImpl(int64_t d_model, int64_t hidden, double init_std = 0.02,
             const TensorParallel& tp = {});
  // x: [..., D], this rank's tokens; under TP every rank passes as many.
  torch::Tensor forward(const torch::Tensor& x);

  ParallelLinear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
  // Appends what this layer says of each of its parameters (named prefix + name).
  void describe(const std::string& prefix, std::vector<ParamSpec>& out) const;

 private:
  TensorParallel tp_;
};
TORCH_MODULE(SwiGLU);

}  // namespace moxie
