// Experts (grouped) and the dense SwiGLU MLP.
#include "experts/experts.h"

#include "experts/grouped_swiglu.h"

namespace moxie {

ExpertsImpl::ExpertsImpl(int64_t num_local_experts, int64_t d_model, int64_t hidden,
                         int64_t first_expert, double init_std) {
  w13 = register_parameter("w13", torch::empty({num_local_experts, 2 * hidden, d_model}));
  w2 = register_parameter("w2", torch::empty({num_local_experts, d_model, hidden}));
  torch::NoGradGuard no_grad;
  // Every rank draws the base seed, so the global generator stays in step.
  const auto base = torch::randint(0, int64_t{1} << 40, {1}, torch::kLong).item<int64_t>();
  for (int64_t e = 0; e < num_local_experts; ++e) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(base + first_expert + e));
    w13[e].normal_(0.0, init_std, gen);
    w2[e].normal_(0.0, init_std, gen);
  }
}

torch::Tensor ExpertsImpl::forward(const torch::Tensor& x_ND,
                                   const std::vector<int64_t>& segment_rows,
                                   const std::vector<int64_t>& segment_experts) {
  return grouped_swiglu(x_ND, w13, w2, segment_rows, segment_experts);
}

SwiGLUImpl::SwiGLUImpl(int64_t d_model, int64_t hidden, double init_std) {
  auto linear = [](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  gate_proj = register_module("gate_proj", linear(d_model, hidden));
  up_proj = register_module("up_proj", linear(d_model, hidden));
  down_proj = register_module("down_proj", linear(hidden, d_model));
  torch::NoGradGuard no_grad;
  for (auto& p : parameters()) p.normal_(0.0, init_std);
}

torch::Tensor SwiGLUImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

}  // namespace moxie
