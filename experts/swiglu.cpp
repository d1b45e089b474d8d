// SwiGLU forward, under TP on gathered rows.
#include "experts/swiglu.h"

#include "experts/fused.h"
#include "parallel/differentiable.h"

namespace moxie {

SwiGLUImpl::SwiGLUImpl(int64_t d_model, int64_t hidden, double init_std, const TensorParallel& tp)
    : tp_(tp) {
  gate_proj =
      register_module("gate_proj", ParallelLinear(d_model, hidden, Split::kColumn, tp, init_std));
  up_proj =
      register_module("up_proj", ParallelLinear(d_model, hidden, Split::kColumn, tp, init_std));
  down_proj =
      register_module("down_proj", ParallelLinear(hidden, d_model, Split::kRow, tp, init_std));
}

namespace {
torch::Tensor swiglu_of(const torch::Tensor& gate, const torch::Tensor& up) {
  return fused_moe_applies(gate) ? fused_swiglu(gate, up) : torch::silu(gate) * up;
}
}  // namespace

torch::Tensor SwiGLUImpl::forward(const torch::Tensor& x) {
  if (!tp_.on()) return down_proj(swiglu_of(gate_proj(x), up_proj(x)));
  // Token order does not matter to an MLP: gather and scatter along the rows.
  const auto shape = x.sizes().vec();
  auto x_TD = all_gather_along(*tp_.group, x.reshape({-1, shape.back()}), 0);
  auto y_TD = down_proj(swiglu_of(gate_proj(x_TD), up_proj(x_TD)));
  return reduce_scatter_along(*tp_.group, y_TD, 0).reshape(shape);
}

void SwiGLUImpl::describe(const std::string& prefix, std::vector<ParamSpec>& out) const {
  gate_proj->describe(prefix + "gate_proj.", out);
  up_proj->describe(prefix + "up_proj.", out);
  down_proj->describe(prefix + "down_proj.", out);
}

}  // namespace moxie
