// Parameter groups by layout.
#include "core/train/param_groups.h"

namespace moxie {
namespace {

// The layouts of a model on one process (no parallelism, no ZeRO-1).
std::vector<ParamLayout> single_process_layouts(const CausalLM& model) {
  const auto specs = model->param_specs();
  return make_param_layouts(specs, std::vector<bool>(specs.size(), true), ParallelDims(),
                            RankCoordinates(), false);
}

}  // namespace

std::vector<ParamGroup> make_param_groups(const std::vector<torch::Tensor>& params,
                                          const std::vector<ParamLayout>& layouts,
                                          const OptimOptions& optim,
                                          const std::function<bool(const torch::Tensor&)>& keep,
                                          double router_lr) {
  ParamGroup decay{"decay", {}, optim.weight_decay, 1.0};
  ParamGroup no_decay{"no_decay", {}, 0.0, 1.0};
  ParamGroup router{"router", {}, optim.weight_decay, router_lr};
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    if (keep && !keep(p)) continue;
    if (!p.requires_grad()) continue;  // frozen: no optimizer state
    if (router_lr != 1.0 && layouts[i].router()) {
      router.params.push_back(p);
      continue;
    }
    const bool embedding = layouts[i].role == ParamRole::kEmbedding;
    if (p.dim() >= 2 && (!embedding || optim.decay_embeddings)) {
      decay.params.push_back(p);
    } else {
      no_decay.params.push_back(p);
    }
  }
  if (router.params.empty()) return {decay, no_decay};
  return {decay, no_decay, router};
}

std::vector<ParamGroup> make_param_groups(CausalLM& model, const OptimOptions& optim) {
  return make_param_groups(model->parameters(), single_process_layouts(model), optim);
}

}  // namespace moxie
