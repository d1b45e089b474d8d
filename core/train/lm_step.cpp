// The language-model step: cross-entropy over the global batch's counted
// targets, however they fall on replicas and micro-batches, plus the
// routers' aux losses.
#include <limits>

#include "core/train/train_step.h"

namespace moxie {
namespace {

class LanguageModelStep : public TrainStep {
 public:
  StepReport forward_backward(const std::vector<Batch>& micro_batches, StepContext& c) override;
};

// Sums over this rank's micro-batches, reduced over the batch group in one
// all-reduce, in this order.
struct LocalSums {
  torch::Tensor loss, aux, balance;  // float64 scalars on the device: one host sync per step
  int64_t dropped = 0, assignments = 0;
};

StepReport LanguageModelStep::forward_backward(const std::vector<Batch>& micro_batches,
                                               StepContext& c) {
  const auto& groups = c.groups;
  const double n_dp = static_cast<double>(groups.dims.dp()),
               n_tp = static_cast<double>(groups.dims.tp());
  const int64_t grad_accum = static_cast<int64_t>(micro_batches.size());
  // The loss is the mean over the global batch's counted targets (packed
  // rows count different numbers): each micro-batch's sum over the global
  // count, times dp because the gradient sync averages over the replicas.
  double local_targets = 0;
  for (const auto& b : micro_batches) local_targets += b.loss_mask.sum().item<double>();
  auto count = torch::tensor({local_targets}, torch::kDouble);
  if (groups.dims.dp() > 1) groups.dp->all_reduce(count, ReduceOp::kSum);
  const double global_targets = std::max(1.0, count.item<double>());

  StepReport r;
  const auto on = torch::TensorOptions().dtype(torch::kDouble).device(c.device);
  LocalSums sums{torch::zeros({}, on), torch::zeros({}, on), torch::zeros({}, on)};
  for (int64_t micro = 0; micro < grad_accum; ++micro) {
    const auto& host_batch = micro_batches[static_cast<size_t>(micro)];
    const double targets = host_batch.loss_mask.sum().item<double>();
    const auto batch = host_batch.to(c.device);
    auto out = c.model->forward_inputs(model_inputs(batch));
    auto ce = c.model->cross_entropy(out.logits, batch.targets, batch.loss_mask);
    auto loss =
        ce * (targets * n_dp / global_targets) + out.aux_loss / static_cast<double>(grad_accum);
    if (c.poison_loss) {
      ce = ce * std::numeric_limits<double>::quiet_NaN();
      loss = loss * std::numeric_limits<double>::quiet_NaN();
    }
    if (micro + 1 == grad_accum && c.before_last_backward) c.before_last_backward();
    loss.backward();
    sums.loss += ce.detach().to(torch::kDouble) * targets;
    sums.aux += out.aux_loss.detach().to(torch::kDouble);
    r.tokens += batch.num_tokens();
    r.tokens_per_expert_LE.resize(out.moe_stats.size());
    for (size_t l = 0; l < out.moe_stats.size(); ++l) {
      const auto& s = out.moe_stats[l];
      auto& load = r.tokens_per_expert_LE[l];
      load = load.defined() ? load + s.tokens_per_expert_E : s.tokens_per_expert_E.clone();
      sums.balance += s.balance_loss.to(torch::kDouble);
      sums.assignments += s.assignments;
      sums.dropped += s.dropped;
    }
  }
  // Over the global batch: the cross-entropy is equal on a replica's TP
  // ranks, the aux loss is split into TP shares, the balance and drop counts
  // are per rank.
  auto reduced = torch::cat(
      {torch::stack({sums.loss, sums.aux, sums.balance}).cpu(),
       torch::tensor({static_cast<double>(sums.dropped), static_cast<double>(sums.assignments)},
                     torch::kDouble)});
  groups.dp_tp->all_reduce(reduced, ReduceOp::kSum);
  r.loss = reduced[0].item<double>() / (n_tp * global_targets);
  r.aux_loss = reduced[1].item<double>() / (n_dp * static_cast<double>(grad_accum));
  r.balance = reduced[2].item<double>() / (n_dp * n_tp);
  r.dropped = static_cast<int64_t>(reduced[3].item<double>());
  r.assignments = static_cast<int64_t>(reduced[4].item<double>());
  for (auto& load : r.tokens_per_expert_LE) groups.dp_tp->all_reduce(load, ReduceOp::kSum);
  return r;
}

}  // namespace

std::unique_ptr<TrainStep> make_language_model_step() {
  return std::make_unique<LanguageModelStep>();
}

}  // namespace moxie
