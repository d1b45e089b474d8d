// make_param_layouts against layouts worked out by hand: boxes of experts
// (dim 0 over ep) and of TP-split weights (their axis over tp), who writes
// each box, which group each gradient syncs over, and ZeRO-1 owners equal to
// zero1_owners over each group's trainable parameters; coordinates_of
// against the documented rank order.
#include <catch2/catch.hpp>
#include <vector>

#include "parallel/param_layout.h"
#include "parallel/zero_owners.h"

using namespace moxie;

namespace {

ParallelDims dims_of(int64_t dp, int64_t tp, int64_t ep) {
  ParallelOptions o;
  o.dp = dp;
  o.tp = tp;
  o.ep = ep;
  LayoutShape s;
  s.num_experts = 8;
  s.n_heads = s.n_kv_heads = 4;
  return ParallelDims(o, dp * tp, s);
}

std::vector<ParamSpec> specs() {
  return {
      {"embed", {10, 6}, 0, ParamRole::kEmbedding, false},  // vocabulary rows split over tp
      {"q", {4, 6}, 0, ParamRole::kDense, false},           // column-parallel
      {"o", {6, 4}, 1, ParamRole::kDense, false},           // row-parallel
      {"gate", {8, 6}, -1, ParamRole::kRouter, false},      // replicated
      {"w13", {2, 10, 6}, -1, ParamRole::kExpert, false},   // 2 local experts
      {"w13_lora_A", {2, 3, 6}, -1, ParamRole::kExpert, true},
      {"norm", {6}, -1, ParamRole::kDense, false},
      {"q_lora_B", {4, 3}, 0, ParamRole::kDense, true},
  };
}

}  // namespace

TEST_CASE("param layouts: boxes, sync axes and writers at dp2 x tp2, ep4 (rank 3)") {
  const auto dims = dims_of(2, 2, 4);
  // rank 3 = dp_index 1 * tp 2 + tp_index 1; ep index 3 % 4 = 3; expert-dp rank 3 / 4 = 0.
  const auto at = coordinates_of(dims, 3);
  CHECK(at.dp_index == 1);
  CHECK(at.tp_index == 1);
  CHECK(at.ep_index == 3);
  CHECK(at.expert_dp_rank == 0);
  const auto l = make_param_layouts(specs(), std::vector<bool>(8, true), dims, at, false);
  REQUIRE(l.size() == 8);
  CHECK(l[0].global_shape == std::vector<int64_t>{20, 6});
  CHECK(l[0].box_start == std::vector<int64_t>{10, 0});
  CHECK(l[0].sync == SyncAxis::kDp);
  CHECK(!l[0].writes_box);  // dp index 1: replica 0 writes TP slices
  CHECK(l[2].global_shape == std::vector<int64_t>{6, 8});
  CHECK(l[2].box_start == std::vector<int64_t>{0, 4});
  CHECK(l[3].global_shape == std::vector<int64_t>{8, 6});
  CHECK(l[3].box_start == std::vector<int64_t>{0, 0});
  CHECK(l[3].sync == SyncAxis::kDpTp);
  CHECK(!l[3].writes_box);  // only world rank 0 writes replicated tensors
  CHECK(l[3].router());
  CHECK(l[4].global_shape == std::vector<int64_t>{8, 10, 6});
  CHECK(l[4].box_start == std::vector<int64_t>{6, 0, 0});
  CHECK(l[4].sync == SyncAxis::kExpertDp);
  CHECK(l[4].writes_box);  // expert-dp rank 0 of its group
  CHECK(l[5].adapter);
  CHECK(l[5].box_start == std::vector<int64_t>{6, 0, 0});
  CHECK(l[7].box_start == std::vector<int64_t>{4, 0});
  for (const auto& p : l) CHECK(p.zero_owner == -1);

  // Rank 1 (replica 0, TP slice 1, EP index 1, expert-dp rank 0) writes its
  // TP slices and its experts, but not the replicated tensors.
  const auto r1 =
      make_param_layouts(specs(), std::vector<bool>(8, true), dims, coordinates_of(dims, 1), false);
  CHECK(r1[0].writes_box);
  CHECK(r1[0].box_start == std::vector<int64_t>{10, 0});
  CHECK(!r1[3].writes_box);
  CHECK(r1[4].writes_box);
  CHECK(r1[4].box_start == std::vector<int64_t>{2, 0, 0});
}

TEST_CASE("param layouts: without tp nothing is split, rank 0 writes every dense box") {
  const auto dims = dims_of(4, 1, 2);
  const auto l =
      make_param_layouts(specs(), std::vector<bool>(8, true), dims, coordinates_of(dims, 0), false);
  for (const auto& p : l) {
    INFO(p.name);
    CHECK(p.tp_axis == -1);
    if (!p.expert()) {
      CHECK(p.sync == SyncAxis::kDpTp);
      CHECK(p.global_shape == p.box_shape);
      CHECK(p.writes_box);
    }
  }
}

TEST_CASE("param layouts: ZeRO-1 owners are zero1_owners over each group's trainable parameters") {
  const auto dims = dims_of(2, 2, 2);
  auto s = specs();
  std::vector<bool> trainable(s.size(), true);
  trainable[1] = false;  // a frozen TP weight gets no owner and takes no share
  const auto l = make_param_layouts(s, trainable, dims, coordinates_of(dims, 0), true);
  const SyncAxis axes[] = {SyncAxis::kDpTp, SyncAxis::kDp, SyncAxis::kExpertDp};
  const int sizes[] = {4, 2, 2};  // dp x tp, dp, dp x tp / ep
  for (int a = 0; a < 3; ++a) {
    std::vector<int64_t> numel;
    std::vector<size_t> members;
    for (size_t i = 0; i < s.size(); ++i) {
      if (!trainable[i] || l[i].sync != axes[a]) continue;
      int64_t n = 1;
      for (auto d : s[i].shape) n *= d;
      numel.push_back(n);
      members.push_back(i);
    }
    const auto owners = zero1_owners(numel, sizes[a]);
    for (size_t k = 0; k < members.size(); ++k) CHECK(l[members[k]].zero_owner == owners[k]);
  }
  CHECK(l[1].zero_owner == -1);
  CHECK(keeps_optimizer_state(l[1], coordinates_of(dims, 1)));
}

TEST_CASE("coordinates_of follows the documented rank order") {
  const auto dims = dims_of(4, 2, 4);
  for (int64_t r = 0; r < 8; ++r) {
    const auto c = coordinates_of(dims, r);
    CHECK(c.dp_index * 2 + c.tp_index == r);
    CHECK(c.ep_index == r % 4);
    CHECK(c.expert_dp_rank == r / 4);
    CHECK(c.rank_in(SyncAxis::kDpTp) == r);
    CHECK(c.rank_in(SyncAxis::kDp) == c.dp_index);
  }
  CHECK(sync_group_size(dims, SyncAxis::kExpertDp) == dims.expert_dp());
}
