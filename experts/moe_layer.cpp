// MoELayer orchestration.
#include "experts/moe_layer.h"

namespace moxie {

MoELayerImpl::MoELayerImpl(int64_t d_model, const MoEOptions& options,
                           const ModelParallel& parallel, double init_std)
    : options_(options), dispatcher_(make_dispatcher(options, parallel.ep)) {
  gate = register_module("gate", Router(d_model, options, parallel.batch, init_std));
  experts = register_module(
      "experts", Experts(dispatcher_->num_local_experts(), d_model, options.expert_hidden,
                         dispatcher_->first_local_expert(), init_std));
  if (options.num_shared_experts > 0) {
    const int64_t hidden = options.shared_expert_hidden > 0
                               ? options.shared_expert_hidden
                               : options.expert_hidden * options.num_shared_experts;
    shared_expert =
        register_module("shared_expert", SwiGLU(d_model, hidden, init_std, parallel.tp));
    shared_expert_gate = register_module(
        "shared_expert_gate", torch::nn::Linear(torch::nn::LinearOptions(d_model, 1).bias(false)));
    torch::NoGradGuard no_grad;
    shared_expert_gate->weight.normal_(0.0, init_std);
  }
}

MoEOutput MoELayerImpl::forward(const torch::Tensor& x) {
  const auto shape = x.sizes().vec();
  auto x_TD = x.reshape({-1, shape.back()});

  auto routing = gate(x_TD);
  // Capacity is per moe.capacity_group tokens, else per sequence when the
  // input has one ([..., S, D]).
  const int64_t capacity_group =
      options_.capacity_group > 0 ? options_.capacity_group : (x.dim() >= 3 ? x.size(-2) : 0);
  auto dispatched = dispatcher_->dispatch_async(x_TD, routing, capacity_group);
  // The shared expert computes while the routed tokens travel.
  torch::Tensor shared_TD;
  if (shared_expert) shared_TD = torch::sigmoid(shared_expert_gate(x_TD)) * shared_expert(x_TD);
  dispatched.wait();
  auto expert_out_ND =
      experts(dispatched.tokens_ND, dispatched.segment_rows, dispatched.segment_experts);
  auto y_TD = dispatcher_->combine(expert_out_ND, dispatched);
  if (shared_TD.defined()) y_TD = y_TD + shared_TD;

  MoEOutput out;
  out.y = y_TD.reshape(shape);
  out.aux_loss = routing.aux_loss;
  out.stats.tokens_per_expert_E = routing.tokens_per_expert_E;
  out.stats.balance_loss = routing.balance_loss;
  out.stats.assignments = routing.expert_idx_TK.numel();
  out.stats.dropped = dispatched.plan.dropped;
  return out;
}

void MoELayerImpl::describe(const std::string& prefix, std::vector<ParamSpec>& out) const {
  gate->describe(prefix + "gate.", out);
  experts->describe(prefix + "experts.", out);
  if (shared_expert) {
    shared_expert->describe(prefix + "shared_expert.", out);
    add_spec(out, prefix, "shared_expert_gate.weight", shared_expert_gate->weight);
  }
}

}  // namespace moxie
