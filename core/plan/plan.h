// Capacity planning for a config at a world size, without building anything:
// parameter counts, what one rank holds, FLOPs and all-to-all traffic, and
// whether it fits a device. Pure arithmetic (no torch), so trillion-parameter
// layouts are planned on any machine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/config/layout.h"
#include "parallel/parallel_dims.h"
#include "parallel/param_layout.h"

namespace moxie {

struct PlanOptions {
  int64_t world = 1;
  int64_t rank = 0;            // the rank whose shard is reported
  double device_bytes = 80e9;  // memory of one device
  int64_t param_bytes = 2;     // bytes per parameter and gradient (2: bf16, 4: fp32)
  // --materialize-blocks N: build only the first N transformer blocks; each
  // later block is checked against the plan by name and size and counted with
  // the bytes measured on the last built block of its kind (dense or MoE).
  // -1: build every block.
  int64_t materialize_blocks = -1;
};

struct Plan {
  // Whole model.
  int64_t params_total = 0;
  int64_t params_active = 0;   // one token's: top_k experts, shared experts, the rest
  int64_t params_experts = 0;  // routed experts, all layers
  double flops_per_token = 0;  // training (forward + backward), PaLM's convention
  // Rank `PlanOptions::rank` (ranks hold equal shapes; with ZeRO-1 they differ
  // in which parameters' optimizer state they keep).
  int64_t rank_params = 0;
  int64_t rank_expert_params = 0;
  double rank_param_bytes = 0;
  double rank_grad_bytes = 0;
  double rank_optimizer_bytes = 0;   // fp32 moments (+ fp32 masters when params are not fp32)
  double rank_activation_bytes = 0;  // estimate, see plan.cpp
  double rank_total_bytes = 0;
  double worst_optimizer_bytes =
      0;  // the largest ZeRO-1 share of any rank (= rank's without ZeRO-1)
  double alltoall_bytes_per_step = 0;  // token payload one rank sends and receives, fwd + bwd
  bool fits = false;
};

// Rank `rank`'s parameters in CausalLM's named_parameters() order (every one
// trainable), as make_param_layouts lays them out for the trainer: the same
// boxes, sync axes and ZeRO-1 owners. The specs come from the config by
// arithmetic, since a trillion-parameter model cannot be built to ask it;
// tests/core/test_plan.cpp holds them equal to a built model's param_specs().
std::vector<ParamSpec> plan_param_specs(const Config& config, const ParallelDims& dims);
std::vector<ParamLayout> plan_rank_parameters(const Config& config, const ParallelDims& dims,
                                              int64_t rank);

// Throws LayoutError (parallel/parallel_dims.h) when the layout does not fit the world.
Plan make_plan(const Config& config, const PlanOptions& options);

// The report `moxie plan` prints.
std::string describe(const Config& config, const PlanOptions& options, const Plan& plan);

}  // namespace moxie
