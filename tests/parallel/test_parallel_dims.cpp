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
