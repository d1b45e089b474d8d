// The optimizer's parameter groups, by the usual rule, from the parameters'
// layouts: weight decay on matrices, none on norms, biases and (unless
// optim.decay_embeddings) embeddings; with a router learning rate other
// than 1 the routers get a group of their own at that multiple.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <vector>

#include "core/model/transformer.h"
#include "optim/adamw.h"
#include "optim/options.h"
#include "parallel/param_layout.h"

namespace moxie {

// params[i] is laid out as layouts[i]. Frozen parameters (requires_grad
// false) get no group; `keep` selects the parameters this rank updates
// (ZeRO-1); default: all.
std::vector<ParamGroup> make_param_groups(
    const std::vector<torch::Tensor>& params, const std::vector<ParamLayout>& layouts,
    const OptimOptions& optim, const std::function<bool(const torch::Tensor&)>& keep = nullptr,
    double router_lr = 1.0);

// One process: the model's own layouts.
std::vector<ParamGroup> make_param_groups(CausalLM& model, const OptimOptions& optim);

}  // namespace moxie
