// Experts (grouped).
#include "experts/experts.h"

#include "experts/fused.h"
#include "experts/grouped_swiglu.h"
#include "parallel/differentiable.h"

namespace moxie {

ExpertsImpl::ExpertsImpl(int64_t num_local_experts, int64_t d_model, int64_t hidden,
                         int64_t first_expert, double init_std)
    : first_expert_(first_expert) {
  w13 = register_parameter("w13", torch::empty({num_local_experts, 2 * hidden, d_model}));
  w2 = register_parameter("w2", torch::empty({num_local_experts, d_model, hidden}));
  torch::NoGradGuard no_grad;
  // Every rank draws the base seed, so the global generator stays in step.
  const auto base = torch::randint(0, int64_t{1} << 40, {1}, torch::kLong).item<int64_t>();
  for (int64_t e = 0; e < num_local_experts; ++e) {
    auto gen =
        at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(base + first_expert + e));
    w13[e].normal_(0.0, init_std, gen);
    w2[e].normal_(0.0, init_std, gen);
  }
}

torch::Tensor ExpertsImpl::forward(const torch::Tensor& x_ND,
                                   const std::vector<int64_t>& segment_rows,
                                   const std::vector<int64_t>& segment_experts) {
  auto w13_eff =
      w13_lora_A.defined() ? w13 + torch::bmm(w13_lora_B, w13_lora_A) * lora_scale_ : w13;
  auto w2_eff = w2_lora_A.defined() ? w2 + torch::bmm(w2_lora_B, w2_lora_A) * lora_scale_ : w2;
  return grouped_swiglu(x_ND, w13_eff, w2_eff, segment_rows, segment_experts);
}

void ExpertsImpl::add_lora(bool w13_on, bool w2_on, int64_t rank, double alpha) {
  TORCH_CHECK(rank > 0, "Experts::add_lora: rank must be positive");
  torch::NoGradGuard no_grad;
  const int64_t E = w13.size(0), D = w13.size(2), H2 = w13.size(1), H = w2.size(2);
  const auto base = torch::randint(0, int64_t{1} << 40, {1}, torch::kLong).item<int64_t>();
  auto draw = [&](int64_t cols, int64_t salt) {
    auto a = torch::empty({E, rank, cols}, torch::kFloat);
    for (int64_t e = 0; e < E; ++e) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(
          static_cast<uint64_t>(base + 2 * (first_expert_ + e) + salt));
      a[e].normal_(0.0, 1.0 / std::sqrt(static_cast<double>(cols)), gen);
    }
    return a.to(w13.scalar_type());
  };
  if (w13_on) {
    w13_lora_A = register_parameter("w13_lora_A", draw(D, 0));
    w13_lora_B = register_parameter("w13_lora_B", torch::zeros({E, H2, rank}, w13.options()));
  }
  if (w2_on) {
    w2_lora_A = register_parameter("w2_lora_A", draw(H, 1));
    w2_lora_B = register_parameter("w2_lora_B", torch::zeros({E, D, rank}, w2.options()));
  }
  lora_scale_ = alpha / static_cast<double>(rank);
}

void ExpertsImpl::merge_lora() {
  torch::NoGradGuard no_grad;
  if (w13_lora_A.defined()) {
    w13.add_(torch::bmm(w13_lora_B, w13_lora_A) * lora_scale_);
    w13_lora_B.zero_();
  }
  if (w2_lora_A.defined()) {
    w2.add_(torch::bmm(w2_lora_B, w2_lora_A) * lora_scale_);
    w2_lora_B.zero_();
  }
}

void ExpertsImpl::describe(const std::string& prefix, std::vector<ParamSpec>& out) const {
  add_spec(out, prefix, "w13", w13, -1, ParamRole::kExpert);
  add_spec(out, prefix, "w2", w2, -1, ParamRole::kExpert);
  add_spec(out, prefix, "w13_lora_A", w13_lora_A, -1, ParamRole::kExpert, /*adapter=*/true);
  add_spec(out, prefix, "w13_lora_B", w13_lora_B, -1, ParamRole::kExpert, /*adapter=*/true);
  add_spec(out, prefix, "w2_lora_A", w2_lora_A, -1, ParamRole::kExpert, /*adapter=*/true);
  add_spec(out, prefix, "w2_lora_B", w2_lora_B, -1, ParamRole::kExpert, /*adapter=*/true);
}

}  // namespace moxie
