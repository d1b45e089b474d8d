// Expert parallelism under mpiexec: an MoE layer whose experts are split over
// the ranks by the all-to-all dispatcher computes what the single-process
// layer computes on the same tokens, forward and backward.
#include <catch2/catch.hpp>

#include "experts/moe_layer.h"
#include "parallel/mpi_communicator.h"

using namespace moxie;

namespace {

void check_layer(MoEOptions o) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int ep = comm.size(), me = comm.rank();
  o.num_experts = 4 * ep;
  const int64_t D = 6, local = o.num_experts / ep;

  // The same full layer on every rank (same seed), and this rank's EP layer
  // holding its slice of the experts.
  torch::manual_seed(17);
  MoELayer full(D, o);
  full->to(torch::kDouble);
  {
    torch::NoGradGuard g;
    for (auto& p : full->parameters()) p.normal_(0, 0.5);
  }
  ModelParallel parallel;
  parallel.ep = &comm;
  MoELayer ep_layer(D, o, parallel);
  ep_layer->to(torch::kDouble);
  {
    torch::NoGradGuard g;
    ep_layer->gate->weight.copy_(full->gate->weight);
    ep_layer->experts->w13.copy_(full->experts->w13.narrow(0, me * local, local));
    ep_layer->experts->w2.copy_(full->experts->w2.narrow(0, me * local, local));
  }

  // Each rank has its own tokens (different counts per rank on purpose).
  torch::manual_seed(100 + me);
  auto x = torch::randn({10 + 3 * me, D}, torch::kDouble);
  auto upstream = torch::randn({10 + 3 * me, D}, torch::kDouble);

  auto x_ep = x.clone().requires_grad_(true);
  auto out = ep_layer(x_ep);
  (out.y * upstream).sum().backward();

  auto x_ref = x.clone().requires_grad_(true);
  auto ref = full(x_ref);
  (ref.y * upstream).sum().backward();

  CHECK(out.stats.dropped == ref.stats.dropped);
  CHECK(torch::allclose(out.y, ref.y, 1e-10, 1e-12));
  CHECK(torch::allclose(x_ep.grad(), x_ref.grad(), 1e-10, 1e-12));
  // The router sees this rank's tokens in both.
  CHECK(torch::allclose(ep_layer->gate->weight.grad(), full->gate->weight.grad(), 1e-10, 1e-12));
  // An expert's gradient collects every rank's tokens: the sum of the
  // single-process gradients over ranks, restricted to this rank's experts.
  auto w13 = full->experts->w13.grad().clone();
  auto w2 = full->experts->w2.grad().clone();
  comm.all_reduce(w13, ReduceOp::kSum);
  comm.all_reduce(w2, ReduceOp::kSum);
  CHECK(torch::allclose(ep_layer->experts->w13.grad(), w13.narrow(0, me * local, local), 1e-10,
                        1e-12));
  CHECK(
      torch::allclose(ep_layer->experts->w2.grad(), w2.narrow(0, me * local, local), 1e-10, 1e-12));
}

}  // namespace

TEST_CASE("expert-parallel MoE layer equals the single-process layer (dropless)") {
  MoEOptions o;
  o.top_k = 2;
  o.expert_hidden = 5;
  o.aux_loss_coef = 0;
  check_layer(o);
}

TEST_CASE("expert-parallel MoE layer equals the single-process layer (capacity factor)") {
  MoEOptions o;
  o.top_k = 2;
  o.expert_hidden = 5;
  o.aux_loss_coef = 0;
  o.capacity_factor = 0.75;
  check_layer(o);
}
