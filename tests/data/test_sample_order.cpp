// Sample order: every epoch a permutation, shuffled in blocks, and the global
// stream the same whatever the number of data-parallel ranks.
#include <algorithm>
#include <catch2/catch.hpp>
#include <set>

#include "data/sample_order.h"

using namespace moxie;

TEST_CASE("every epoch is a permutation, different per epoch and seed, shuffled in blocks") {
  for (uint64_t n : {1ull, 7ull, 256ull, 1000ull, 4099ull}) {
    SampleOrder order(n, 42, 64);
    for (uint64_t e : {0ull, 1ull, 5ull}) {
      const auto ep = order.epoch(e);
      std::vector<uint64_t> seen;
      for (uint64_t p = 0; p < n; ++p) seen.push_back(order.sample_at(ep, p));
      std::sort(seen.begin(), seen.end());
      std::vector<uint64_t> all(n);
      for (uint64_t i = 0; i < n; ++i) all[i] = i;
      INFO("n=" << n << " epoch=" << e);
      CHECK(seen == all);
    }
  }
  SampleOrder a(1000, 42, 64), b(1000, 43, 64);
  int same_epoch = 0, same_seed = 0;
  for (uint64_t p = 0; p < 1000; ++p) {
    same_epoch += a.sample_at(0, p) == a.sample_at(1, p);
    same_seed += a.sample_at(0, p) == b.sample_at(0, p);
  }
  CHECK(same_epoch < 20);  // about 1 in 1000 positions agree by chance
  CHECK(same_seed < 20);
  // Blocks: 64 consecutive positions come from one block of 64 samples
  // (a dataset of whole blocks; otherwise the short block shifts the rest).
  SampleOrder whole(1024, 42, 64);
  const auto ep = whole.epoch(3);
  for (uint64_t start : {0ull, 64ull, 640ull, 960ull}) {
    std::set<uint64_t> blocks;
    for (uint64_t p = start; p < start + 64; ++p) blocks.insert(whole.sample_at(ep, p) / 64);
    CHECK(blocks.size() == 1);
  }
  CHECK_THROWS_AS(a.sample_at(0, 1000), std::out_of_range);
  CHECK_THROWS_AS(SampleOrder(0, 1), std::invalid_argument);
}

TEST_CASE("over one epoch, 1 to 4 data-parallel ranks see the dataset exactly once, in one order") {
  const uint64_t n = 1200, global_batch = 24;  // 50 steps per epoch; 24 splits over 1, 2, 3, 4
  SampleOrder order(n, 9, 32);
  std::vector<uint64_t> reference;
  for (uint64_t dp : {1, 2, 3, 4}) {
    std::vector<uint64_t> stream;  // the global batch, rank slices concatenated
    std::multiset<uint64_t> seen;
    for (uint64_t step = 0; step < n / global_batch; ++step) {
      for (uint64_t r = 0; r < dp; ++r) {
        for (const auto& at : rank_positions(n, step, global_batch, r, dp)) {
          REQUIRE(at.epoch == 0);
          const uint64_t s = order.sample_at(at.epoch, at.position);
          stream.push_back(s);
          seen.insert(s);
        }
      }
    }
    INFO("dp=" << dp);
    CHECK(seen.size() == n);
    CHECK(std::set<uint64_t>(seen.begin(), seen.end()).size() == n);  // no duplicates, no gaps
    if (reference.empty()) reference = stream;
    CHECK(stream == reference);
  }
  // The next step wraps into epoch 1.
  CHECK(rank_positions(n, n / global_batch, global_batch, 0, 1).front().epoch == 1);
  CHECK_THROWS_WITH(rank_positions(n, 0, 24, 0, 5), Catch::Contains("does not split over 5"));
}
