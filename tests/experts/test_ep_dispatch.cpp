// Expert parallelism under mpiexec: an MoE layer whose experts are split over
// the ranks by the all-to-all dispatcher computes what the single-process
// layer computes on the same tokens, forward and backward, also with several
// microbatches' graphs alive at once and with a shared expert computed while
// the tokens travel.
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

  if (o.num_shared_experts > 0) {
    torch::NoGradGuard g;
    auto from = full->named_parameters();
    for (auto& p : ep_layer->named_parameters()) {
      if (p.key().rfind("shared_expert", 0) == 0) p.value().copy_(from[p.key()]);
    }
  }

  // Each rank has its own tokens (different counts per rank and per
  // microbatch on purpose). Microbatches 0 and 1 are both forwarded before
  // either goes backward (as a pipeline schedule does), so no exchange buffer
  // may be reused while a graph still reads it; microbatch 2 comes after.
  torch::manual_seed(100 + me);
  struct Microbatch {
    torch::Tensor x_ep, x_ref, upstream, y_ep, y_ref;
  };
  std::vector<Microbatch> mbs;
  for (int64_t m = 0; m < 3; ++m) {
    Microbatch mb;
    auto x = torch::randn({10 + 3 * me + 5 * m, D}, torch::kDouble);
    mb.upstream = torch::randn({10 + 3 * me + 5 * m, D}, torch::kDouble);
    mb.x_ep = x.clone().requires_grad_(true);
    mb.x_ref = x.clone().requires_grad_(true);
    mbs.push_back(mb);
  }
  auto forward = [&](Microbatch& mb) {
    auto out = ep_layer(mb.x_ep);
    auto ref = full(mb.x_ref);
    CHECK(out.stats.dropped == ref.stats.dropped);
    mb.y_ep = out.y;
    mb.y_ref = ref.y;
  };
  auto backward = [&](Microbatch& mb) {
    (mb.y_ep * mb.upstream).sum().backward();
    (mb.y_ref * mb.upstream).sum().backward();
  };
  forward(mbs[0]);
  forward(mbs[1]);
  backward(mbs[1]);
  backward(mbs[0]);
  forward(mbs[2]);
  backward(mbs[2]);

  for (auto& mb : mbs) {
    CHECK(torch::allclose(mb.y_ep, mb.y_ref, 1e-10, 1e-12));
    CHECK(torch::allclose(mb.x_ep.grad(), mb.x_ref.grad(), 1e-10, 1e-12));
  }
  // The router sees this rank's tokens in both.
  CHECK(torch::allclose(ep_layer->gate->weight.grad(), full->gate->weight.grad(), 1e-10, 1e-12));
  if (o.num_shared_experts > 0) {
    auto ref = full->named_parameters();
    for (auto& p : ep_layer->named_parameters()) {
      if (p.key().rfind("shared_expert", 0) == 0)
        CHECK(torch::allclose(p.value().grad(), ref[p.key()].grad(), 1e-10, 1e-12));
    }
  }
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

TEST_CASE("expert-parallel MoE layer equals the single-process layer (shared expert, overlapped)") {
  MoEOptions o;
  o.top_k = 3;
  o.expert_hidden = 5;
  o.aux_loss_coef = 0;
  o.num_shared_experts = 1;
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
