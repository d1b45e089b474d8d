// Gradient groups by layout.
#include "core/train/gradients.h"

#include <cmath>

#include "optim/clip.h"

namespace moxie {

Gradients::Gradients(const std::vector<torch::Tensor>& params,
                     const std::vector<ParamLayout>& layouts, const ProcessGroups& g,
                     const ParallelOptions& options) {
  const auto& dims = g.dims;
  multi_rank_ = dims.world() > 1;
  overlap_ = options.overlap_grad_sync && multi_rank_;
  // Every gradient ends as the mean over the dp replicas of each replica's
  // gradient. Replicated weights (norms, routers) see only this rank's
  // sequence slice under TP: summed over dp x tp. TP-split weights are whole
  // per slice: summed over dp. An expert's gradient already holds every EP
  // rank's tokens: summed over its expert-data-parallel group.
  groups_.resize(3);
  groups_[0] = {SyncAxis::kDpTp, {}, g.dp_tp.get(), nullptr, nullptr, nullptr};
  groups_[1] = {SyncAxis::kDp, {}, g.dp.get(), g.tp.get(), nullptr, nullptr};
  groups_[2] = {SyncAxis::kExpertDp, {}, g.expert_dp.get(), g.ep.get(), nullptr, nullptr};
  std::vector<std::vector<int>> owners(groups_.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].requires_grad()) continue;  // frozen: no gradient to sync
    const auto k = static_cast<size_t>(layouts[i].sync);
    groups_[k].params.push_back(params[i]);
    owners[k].push_back(layouts[i].zero_owner);
  }
  const double inv_dp = 1.0 / static_cast<double>(dims.dp());
  for (size_t k = 0; k < groups_.size(); ++k) {
    auto& group = groups_[k];
    group.sync =
        std::make_unique<GradientSync>(group.params, *group.sync_group, inv_dp, 32 << 20, overlap_);
    if (options.zero1)
      group.zero = std::make_unique<Zero1Partition>(group.params, owners[k], *group.sync_group);
  }
}

void Gradients::arm() {
  for (auto& group : groups_) group.sync->arm();
}

double Gradients::sync_and_clip(double max_norm) {
  if (multi_rank_) {
    for (auto& group : groups_) group.sync->sync();
  }
  // Each parameter counted once: a replicated gradient is now equal
  // everywhere; TP slices and EP experts are summed over the ranks that hold
  // different parts.
  double sq = 0;
  for (const auto& group : groups_) {
    auto part = torch::tensor({grad_norm_squared(group.params)}, torch::kDouble);
    if (group.norm_group) group.norm_group->all_reduce(part, ReduceOp::kSum);
    sq += part.item<double>();
  }
  const double norm = std::sqrt(sq);
  if (std::isfinite(norm) && max_norm > 0 && norm > max_norm) {
    for (const auto& group : groups_) scale_grads(group.params, max_norm / (norm + 1e-6));
  }
  return norm;
}

std::string Gradients::overlap_report() const {
  int64_t early = 0, buckets = 0;
  for (const auto& group : groups_) {
    early += group.sync->started_in_backward();
    buckets += group.sync->num_buckets();
  }
  return "gradient sync: " + std::to_string(early) + " of " + std::to_string(buckets) +
         " buckets started during the backward pass";
}

bool Gradients::owns(const torch::Tensor& param) const {
  for (const auto& group : groups_)
    if (group.zero && group.zero->owns(param)) return true;
  return false;
}

void Gradients::broadcast_updates() {
  for (auto& group : groups_)
    if (group.zero) group.zero->broadcast_updates();
}

}  // namespace moxie
