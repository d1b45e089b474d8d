// Router: scores, top-k selection, combine weights and balancing losses.
#include "experts/router.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "experts/fused.h"
#include "parallel/tensor_parallel.h"

namespace moxie {

RouterImpl::RouterImpl(int64_t d_model, const MoEOptions& options, Communicator* balance_group,
                       double init_std)
    : options_(options), balance_group_(balance_group) {
  weight = register_parameter("weight", torch::empty({options.num_experts, d_model}));
  bias_E = register_buffer("e_score_correction_bias", torch::zeros({options.num_experts}));
  torch::NoGradGuard no_grad;
  weight.normal_(0.0, init_std);
}

torch::Tensor switch_balance_loss(const torch::Tensor& probs_TE,
                                  const torch::Tensor& tokens_per_expert_E, int64_t top_k,
                                  int64_t num_tokens) {
  const int64_t T = num_tokens > 0 ? num_tokens : probs_TE.size(0);
  const int64_t E = probs_TE.size(1);
  auto fraction_E = tokens_per_expert_E.to(probs_TE.scalar_type()) / static_cast<double>(T);
  auto mean_prob_E = probs_TE.mean(0);
  return (fraction_E * mean_prob_E).sum() * (static_cast<double>(E) / top_k);
}

torch::Tensor RouterImpl::effective_weight() const {
  if (!lora_A.defined()) return weight;
  return weight + torch::mm(lora_B, lora_A) * lora_scale_;
}

void RouterImpl::add_lora(int64_t rank, double alpha) {
  TORCH_CHECK(rank > 0 && !lora_A.defined(), "Router::add_lora: bad rank or adapter already there");
  torch::NoGradGuard no_grad;
  const int64_t D = weight.size(1);
  const auto seed = torch::randint(0, int64_t{1} << 40, {1}, torch::kLong).item<int64_t>();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
  lora_A =
      register_parameter("lora_A", torch::empty({rank, D}, torch::kFloat)
                                       .normal_(0.0, 1.0 / std::sqrt(static_cast<double>(D)), gen)
                                       .to(weight.scalar_type()));
  lora_B = register_parameter("lora_B", torch::zeros({weight.size(0), rank}, weight.options()));
  lora_scale_ = alpha / static_cast<double>(rank);
}

void RouterImpl::merge_lora() {
  if (!lora_A.defined()) return;
  torch::NoGradGuard no_grad;
  weight.copy_(effective_weight());
  lora_B.zero_();
}

RouterOutput RouterImpl::forward(const torch::Tensor& x_TD) {
  // Routing decisions are sensitive to rounding: score in float32 at least.
  const auto score_dtype = x_TD.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  auto logits_TE = torch::mm(x_TD.to(score_dtype), effective_weight().to(score_dtype).t());

  torch::Tensor scores_TE;
  torch::Tensor probs_TE;  // rows sum to one, for the balance loss
  torch::Tensor lse_T;     // logsumexp of the logits, for the z-loss
  RouterOutput out;
  if (fused_moe_applies(logits_TE) && options_.top_k <= kFusedRouteMaxTopK) {
    // Scores, top-k, weights, probabilities and logsumexp in one pass (experts/fused.h).
    auto fused = fused_route(logits_TE, options_.bias_update_rate > 0 ? bias_E : torch::Tensor(),
                             options_.top_k, options_.score_func == ScoreFunc::kSigmoid,
                             options_.renormalize);
    out.expert_idx_TK = fused.idx_TK;
    out.weight_TK = fused.weight_TK;
    probs_TE = fused.probs_TE;
    lse_T = fused.lse_T;
    out.tokens_per_expert_E =
        torch::bincount(out.expert_idx_TK.flatten(), {}, options_.num_experts);
  } else if (options_.score_func == ScoreFunc::kSigmoid) {
    scores_TE = torch::sigmoid(logits_TE);
    probs_TE = scores_TE / (scores_TE.sum(-1, true) + 1e-20);
  } else {
    scores_TE = torch::softmax(logits_TE, -1);
    probs_TE = scores_TE;
  }

  if (!out.weight_TK.defined()) {
    {
      torch::NoGradGuard no_grad;
      auto selection_TE = scores_TE;
      if (options_.bias_update_rate > 0) selection_TE = scores_TE + bias_E.to(score_dtype);
      out.expert_idx_TK = std::get<1>(selection_TE.topk(options_.top_k, -1));
      out.tokens_per_expert_E =
          torch::bincount(out.expert_idx_TK.flatten(), {}, options_.num_experts);
    }
    auto weight_TK = scores_TE.gather(1, out.expert_idx_TK);
    if (options_.renormalize) weight_TK = weight_TK / (weight_TK.sum(-1, true) + 1e-20);
    out.weight_TK = weight_TK;
  }

  torch::Tensor balance;
  if (balance_group_ && balance_group_->size() > 1 && options_.aux_loss_coef > 0) {
    // Expert fractions over the whole data-parallel batch (counts carry no gradient).
    auto counts = torch::cat(
        {out.tokens_per_expert_E, torch::tensor({x_TD.size(0)}, torch::kLong).to(x_TD.device())});
    balance_group_->all_reduce(counts, ReduceOp::kSum);
    const int64_t E = options_.num_experts;
    balance = switch_balance_loss(probs_TE, counts.narrow(0, 0, E), options_.top_k,
                                  counts[E].item<int64_t>());
  } else {
    balance = switch_balance_loss(probs_TE, out.tokens_per_expert_E, options_.top_k);
  }
  out.balance_loss = balance.detach();
  out.aux_loss = balance * options_.aux_loss_coef;
  if (options_.z_loss_coef > 0) {
    if (!lse_T.defined()) lse_T = torch::logsumexp(logits_TE, -1);
    out.aux_loss = out.aux_loss + lse_T.pow(2).mean() * options_.z_loss_coef;
  }
  return out;
}

void RouterImpl::update_bias(const torch::Tensor& load_E) {
  if (options_.bias_update_rate <= 0) return;
  torch::NoGradGuard no_grad;
  auto load = load_E.to(torch::kFloat);
  bias_E.add_(torch::sign(load.mean() - load) * options_.bias_update_rate);
}

void RouterImpl::describe(const std::string& prefix, std::vector<ParamSpec>& out) const {
  add_spec(out, prefix, "weight", weight, -1, ParamRole::kRouter);
  add_spec(out, prefix, "lora_A", lora_A, -1, ParamRole::kRouter, /*adapter=*/true);
  add_spec(out, prefix, "lora_B", lora_B, -1, ParamRole::kRouter, /*adapter=*/true);
}

}  // namespace moxie
