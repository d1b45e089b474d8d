// ParallelDims: valid layouts and the one-sentence errors for invalid ones.
#include <catch2/catch.hpp>

#include "parallel/parallel_dims.h"

using namespace moxie;

namespace {
ParallelOptions layout(int64_t dp, int64_t tp, int64_t ep) {
  ParallelOptions o;
  o.dp = dp;
  o.tp = tp;
  o.ep = ep;
  return o;
}
}  // namespace

TEST_CASE("valid layouts and their expert-data-parallel size") {
  ParallelDims d(layout(2, 2, 2), 4 * 1, 8, 4, 2);
  CHECK(d.world() == 4);
  CHECK(d.expert_dp() == 2);
  CHECK(ParallelDims(layout(1, 1, 1), 1, 8, 4, 2).expert_dp() == 1);
  CHECK(ParallelDims(layout(4, 1, 4), 4, 8, 4, 2).expert_dp() == 1);
  CHECK(d.describe() == "world 4 = pp1 x dp2 x tp2, ep2 (expert-dp 2)");
}

TEST_CASE("invalid layouts are refused with one sentence") {
  CHECK_THROWS_WITH(ParallelDims(layout(2, 2, 3), 4, 6, 4, 2),
                    Catch::Contains("ep=3 does not divide dp*tp=4"));
  CHECK_THROWS_WITH(ParallelDims(layout(4, 1, 4), 4, 6, 4, 2),
                    Catch::Contains("num_experts=6 is not divisible by parallel.ep=4"));
  CHECK_THROWS_WITH(ParallelDims(layout(1, 4, 1), 4, 8, 6, 2),
                    Catch::Contains("divisible by parallel.tp=4"));
  CHECK_THROWS_WITH(ParallelDims(layout(2, 1, 1), 3, 8, 4, 2),
                    Catch::Contains("does not match the world size 3"));
  auto pp = layout(1, 1, 1);
  pp.pp = 2;
  CHECK_THROWS_WITH(ParallelDims(pp, 2, 8, 4, 2), Catch::Contains("pipeline"));
}

TEST_CASE("tensor parallelism refuses sizes it cannot split, naming the key") {
  LayoutShape s;
  s.num_experts = 8;
  s.n_heads = 4;
  s.n_kv_heads = 2;
  s.vocab_size = 260;
  s.ffn_hidden = 96;
  s.seq_len = 32;
  CHECK(ParallelDims(layout(1, 2, 2), 2, s).tp() == 2);
  auto bad = [&](auto change, const char* message) {
    LayoutShape t = s;
    change(t);
    CHECK_THROWS_WITH(ParallelDims(layout(1, 2, 1), 2, t), Catch::Contains(message));
  };
  bad([](LayoutShape& t) { t.vocab_size = 259; },
      "model.vocab_size=259 is not divisible by parallel.tp=2");
  bad([](LayoutShape& t) { t.ffn_hidden = 95; }, "model.ffn_hidden=95");
  bad([](LayoutShape& t) { t.shared_expert_hidden = 7; }, "moe.shared_expert_hidden=7");
  bad([](LayoutShape& t) { t.seq_len = 33; }, "data.seq_len=33");
  // Capacity groups may not straddle two ranks' sequence slices.
  bad([](LayoutShape& t) { t.capacity = true; }, "moe.capacity_group=0 (one whole sequence)");
  bad(
      [](LayoutShape& t) {
        t.capacity = true;
        t.capacity_group = 32;
      },
      "divisor of 16");
  LayoutShape ok = s;
  ok.capacity = true;
  ok.capacity_group = 8;
  CHECK(ParallelDims(layout(1, 2, 1), 2, ok).tp() == 2);
  // Without tensor parallelism nothing is split: any size is fine.
  LayoutShape odd = s;
  odd.vocab_size = 259;
  odd.capacity = true;
  CHECK(ParallelDims(layout(2, 1, 1), 2, odd).dp() == 2);
}
