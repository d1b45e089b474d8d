// --materialize-rank with only some blocks built: the bytes counted for the
// unbuilt blocks, from a built block of their kind, must equal what building
// every block measures, and a kind with no built block is refused.
#include <catch2/catch.hpp>
#include <sstream>

#include "core/plan/materialize.h"

using namespace moxie;

namespace {

Config small_layout() {
  Config c;
  c.model.vocab_size = 260;
  c.model.d_model = 32;
  c.model.n_layers = 5;
  c.model.n_heads = 4;
  c.model.n_kv_heads = 2;
  c.model.ffn_hidden = 80;
  c.model.first_k_dense = 1;
  c.model.moe_every = 2;  // layers 1 and 3 MoE; 0, 2, 4 dense
  c.moe.num_experts = 8;
  c.moe.top_k = 2;
  c.moe.expert_hidden = 24;
  c.moe.num_shared_experts = 1;
  c.moe.shared_expert_hidden = 16;
  c.parallel.dp = 2;
  c.parallel.tp = 2;
  c.parallel.ep = 2;
  c.parallel.zero1 = true;
  return c;
}

}  // namespace

TEST_CASE("materialize: blocks counted from a built one of their kind measure as built") {
  const auto c = small_layout();
  for (int64_t rank : {0, 3}) {
    PlanOptions all;
    all.world = 4;
    all.rank = rank;
    PlanOptions some = all;
    some.materialize_blocks = 2;  // block 0 (dense) and block 1 (MoE)
    std::ostringstream log_all, log_some;
    const auto full = materialize_rank(c, all, log_all);
    const auto part = materialize_rank(c, some, log_some);
    INFO("rank " << rank << "\n" << log_some.str());
    CHECK(full.blocks_built == 5);
    CHECK(part.blocks_built == 2);
    CHECK(full.shape_mismatches == 0);
    CHECK(part.shape_mismatches == 0);
    CHECK(part.params == full.params);
    CHECK(part.param_bytes == full.param_bytes);
    CHECK(part.grad_bytes == full.grad_bytes);
    CHECK(part.optimizer_bytes == full.optimizer_bytes);
    // And the plan's own figures, from the same parameter layouts.
    const auto plan = make_plan(c, all);
    CHECK(part.params == plan.rank_params);
    CHECK(part.optimizer_bytes == Approx(plan.rank_optimizer_bytes));
  }
}

TEST_CASE("materialize: too few blocks to stand for every kind are refused") {
  const auto c = small_layout();
  PlanOptions o;
  o.world = 4;
  o.materialize_blocks = 1;  // dense only; block 1 is MoE
  std::ostringstream log;
  CHECK_THROWS_WITH(materialize_rank(c, o, log),
                    Catch::Contains("builds no MoE block") && Catch::Contains("at least 2 blocks"));
}
