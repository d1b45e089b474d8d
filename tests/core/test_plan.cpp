// moxie plan's arithmetic against models actually built: parameter counts of
// a whole model and of one expert-parallel rank's shard, and FLOPs by hand.
#include <catch2/catch.hpp>

#include "core/model/transformer.h"
#include "core/plan/plan.h"
#include "parallel/simulated_communicator.h"
#include "parallel/zero.h"

using namespace moxie;

namespace {

Config small() {
  Config c;
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
  return c;
}

int64_t numel(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

}  // namespace

TEST_CASE("plan: parameter counts equal the built model's") {
  auto c = small();
  PlanOptions o;
  auto plan = make_plan(c, o);
  CausalLM model(c.model, c.moe);
  CHECK(plan.params_total == numel(*model));
  int64_t experts = 0;
  for (auto& layer : model->moe_layers()) experts += numel(*layer->experts);
  CHECK(plan.params_experts == experts);
  CHECK(plan.params_active == numel(*model) - experts * 6 / 8);  // 6 of 8 experts idle per token

  c.model.tie_embeddings = true;
  CHECK(make_plan(c, o).params_total == numel(*CausalLM(c.model, c.moe)));
}

TEST_CASE("plan: one expert-parallel rank holds what an EP shard of the model holds") {
  auto c = small();
  c.parallel.dp = 4;
  c.parallel.ep = 4;
  PlanOptions o;
  o.world = 4;
  o.param_bytes = 4;
  auto plan = make_plan(c, o);
  SimulatedCommunicator ep(0, 4);  // rank 0 of the EP group: experts 0 and 1 of 8
  ModelParallel shard;
  shard.ep = &ep;
  CausalLM rank_model(c.model, c.moe, shard);
  CHECK(plan.rank_params == numel(*rank_model));
  CHECK(plan.rank_param_bytes == 4.0 * numel(*rank_model));
  // fp32 parameters: Adam's two moments only, 8 bytes each; ZeRO-1 divides them.
  CHECK(plan.rank_optimizer_bytes == Approx(8.0 * numel(*rank_model)));
  c.parallel.zero1 = true;
  // ZeRO-1 as the trainer assigns it: dense parameters whole over the dp = 4
  // ranks (rank 0 keeps its share), experts over expert-dp = dp * tp / ep = 1.
  std::vector<torch::Tensor> dense;
  int64_t experts = 0;
  const auto specs = rank_model->param_specs();
  const auto params = rank_model->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    if (specs[i].role == ParamRole::kExpert)
      experts += params[i].numel();
    else
      dense.push_back(params[i]);
  }
  const auto owners = zero1_owners(dense, 4);
  int64_t owned = experts;
  for (size_t i = 0; i < dense.size(); ++i) owned += owners[i] == 0 ? dense[i].numel() : 0;
  for (int64_t r = 0; r < 4; ++r) {
    o.rank = r;
    int64_t mine = experts;
    for (size_t i = 0; i < dense.size(); ++i) mine += owners[i] == r ? dense[i].numel() : 0;
    CHECK(make_plan(c, o).rank_optimizer_bytes == Approx(8.0 * mine));
  }
  o.rank = 0;
  CHECK(make_plan(c, o).rank_optimizer_bytes == Approx(8.0 * owned));
}

TEST_CASE(
    "plan: a tensor- and expert-parallel rank's parameters, name by name, as the trainer lays them "
    "out") {
  auto c = small();
  c.parallel.dp = 2;
  c.parallel.tp = 2;
  c.parallel.ep = 4;
  c.parallel.zero1 = GENERATE(false, true);
  c.moe.num_shared_experts = GENERATE(0, 1);
  c.model.tie_embeddings = GENERATE(false, true);
  c.model.vocab_size = 260;
  const auto dims = layout_of(c, 4);
  for (int r : {0, 1, 2, 3}) {
    const auto at = coordinates_of(dims, r);
    SimulatedCommunicator tp(static_cast<int>(at.tp_index), 2);
    SimulatedCommunicator ep(static_cast<int>(at.ep_index), 4);  // 2 of the 8 experts
    ModelParallel shard;
    shard.ep = &ep;
    shard.tp.group = &tp;
    CausalLM model(c.model, c.moe, shard);
    const auto planned = plan_rank_parameters(c, dims, r);
    const auto built = model->named_parameters();
    const auto specs = model->param_specs();
    const auto trainer = make_param_layouts(specs, std::vector<bool>(specs.size(), true), dims, at,
                                            c.parallel.zero1);
    REQUIRE(planned.size() == built.size());
    for (size_t i = 0; i < planned.size(); ++i) {
      INFO(planned[i].name);
      CHECK(built[i].key() == planned[i].name);
      CHECK(built[i].value().sizes().vec() == planned[i].box_shape);
      CHECK(trainer[i].global_shape == planned[i].global_shape);
      CHECK(trainer[i].box_start == planned[i].box_start);
      CHECK(trainer[i].tp_axis == planned[i].tp_axis);
      CHECK(trainer[i].role == planned[i].role);
      CHECK(trainer[i].sync == planned[i].sync);
      CHECK(trainer[i].writes_box == planned[i].writes_box);
      CHECK(trainer[i].zero_owner == planned[i].zero_owner);
    }
  }
}

TEST_CASE("plan: FLOPs per token and all-to-all bytes by hand") {
  Config c;
  c.model.vocab_size = 300;
  c.model.d_model = 16;
  c.model.n_layers = 1;
  c.model.n_heads = 2;
  c.model.n_kv_heads = 1;
  c.moe.num_experts = 4;
  c.moe.top_k = 1;
  c.moe.expert_hidden = 8;
  c.data.seq_len = 10;
  c.train.micro_batch_size = 3;
  c.parallel.dp = 2;
  c.parallel.ep = 2;
  PlanOptions o;
  o.world = 2;
  auto plan = make_plan(c, o);
  // Matmuls one token uses: q 16x16, k and v 16x8 each, o 16x16, router 16x4,
  // one expert 3 x 16 x 8, head 16 x 300.
  const double matmul = 256 + 128 + 128 + 256 + 64 + 384 + 4800;
  const double attention = 12.0 * 1 * 2 * 8 * 10;
  CHECK(plan.flops_per_token == Approx(6 * matmul + attention));
  // 30 tokens, 1 copy each, half leave the rank, there and back, fwd and bwd, 2 bytes.
  CHECK(plan.alltoall_bytes_per_step == Approx(4.0 * 30 * 16 * 2 * 0.5));
}

TEST_CASE("plan: a layout that does not fit the world is refused") {
  auto c = small();
  c.parallel.dp = 2;
  PlanOptions o;
  o.world = 4;
  CHECK_THROWS_WITH(make_plan(c, o), Catch::Contains("does not match the world size 4"));
}
