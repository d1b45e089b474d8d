// zero1_owners (parallel/zero_owners.h): hand cases, and a naive
// reimplementation of its rule over random sizes. The naive form picks the
// largest parameter left (the lowest index among equals) and gives it to the
// rank with the fewest elements so far; among equally loaded ranks the lowest
// one, since every rank must compute the same assignment.
#include <algorithm>
#include <catch2/catch.hpp>
#include <random>

#include "parallel/zero_owners.h"

using namespace moxie;

namespace {

std::vector<int> naive_owners(const std::vector<int64_t>& numel, int group_size) {
  std::vector<int> owner(numel.size(), -1);
  std::vector<int64_t> load(static_cast<size_t>(group_size), 0);
  for (size_t placed = 0; placed < numel.size(); ++placed) {
    size_t next = numel.size();
    for (size_t i = 0; i < numel.size(); ++i) {
      if (owner[i] < 0 && (next == numel.size() || numel[i] > numel[next])) next = i;
    }
    int rank = 0;
    for (int r = 1; r < group_size; ++r) {
      if (load[static_cast<size_t>(r)] < load[static_cast<size_t>(rank)]) rank = r;
    }
    owner[next] = rank;
    load[static_cast<size_t>(rank)] += numel[next];
  }
  return owner;
}

std::vector<int64_t> loads(const std::vector<int64_t>& numel, const std::vector<int>& owner,
                           int group_size) {
  std::vector<int64_t> load(static_cast<size_t>(group_size), 0);
  for (size_t i = 0; i < numel.size(); ++i) load[static_cast<size_t>(owner[i])] += numel[i];
  return load;
}

}  // namespace

TEST_CASE("zero1_owners: hand cases") {
  // Largest first: 30 (index 1), 30 (index 3), 20, 10. Rank 0 takes the first
  // 30, rank 1 the second; 20 goes to rank 0 (both at 30: the lower rank),
  // 10 to rank 1 (30 < 50).
  CHECK(zero1_owners({10, 30, 20, 30}, 2) == std::vector<int>{1, 0, 0, 1});
  // Equal sizes keep their order: dealt round the ranks like cards.
  CHECK(zero1_owners({5, 5, 5, 5, 5}, 2) == std::vector<int>{0, 1, 0, 1, 0});
  CHECK(zero1_owners({5, 5, 5, 5, 5}, 3) == std::vector<int>{0, 1, 2, 0, 1});
  // One big parameter outweighs many small ones: they all go elsewhere.
  CHECK(zero1_owners({1, 1, 100, 1, 1}, 2) == std::vector<int>{1, 1, 0, 1, 1});
  // A single rank owns everything; more ranks than parameters leave some idle.
  CHECK(zero1_owners({3, 1, 2}, 1) == std::vector<int>{0, 0, 0});
  CHECK(zero1_owners({3, 1, 2}, 5) == std::vector<int>{0, 2, 1});
  CHECK(zero1_owners({}, 4).empty());
  // Empty parameters come last and go to the lightest rank, adding nothing.
  CHECK(zero1_owners({0, 7, 0, 4}, 2) == std::vector<int>{1, 0, 1, 1});
}

TEST_CASE(
    "zero1_owners equals the naive rule over random sizes, and balances within one parameter") {
  std::mt19937_64 rng(2026);
  for (int trial = 0; trial < 300; ++trial) {
    const int group_size = 1 + static_cast<int>(rng() % 9);
    const size_t n = rng() % 60;
    // Few distinct sizes half the time, so ties between parameters and between
    // rank loads are common; else spread over six orders of magnitude.
    const bool ties = trial % 2 == 0;
    std::vector<int64_t> numel(n);
    for (auto& x : numel) {
      x = ties ? static_cast<int64_t>(rng() % 4) * 64 : static_cast<int64_t>(rng() % 1000000);
    }
    INFO("trial " << trial << ": " << n << " parameters over " << group_size << " ranks");
    const auto owner = zero1_owners(numel, group_size);
    REQUIRE(owner == naive_owners(numel, group_size));
    // Greedy largest-first: ranks' loads differ by at most the largest parameter.
    const auto load = loads(numel, owner, group_size);
    const int64_t largest = n ? *std::max_element(numel.begin(), numel.end()) : 0;
    CHECK(*std::max_element(load.begin(), load.end()) -
              *std::min_element(load.begin(), load.end()) <=
          largest);
  }
}
