// Permutation and capacity dropping against naive loops over assignments.
#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <tuple>

#include "experts/permute.h"

using namespace moxie;

namespace {

struct Assignment {
  int64_t token, k, expert;
  double weight;
};

std::vector<Assignment> assignments(const torch::Tensor& idx, const torch::Tensor& w) {
  std::vector<Assignment> out;
  for (int64_t t = 0; t < idx.size(0); ++t)
    for (int64_t k = 0; k < idx.size(1); ++k)
      out.push_back({t, k, idx[t][k].item<int64_t>(), w[t][k].item<double>()});
  return out;
}

// The assignments a capacity keeps, per expert, by the stated policy.
std::set<std::pair<int64_t, int64_t>> naive_kept(const std::vector<Assignment>& all, int64_t E,
                                                 int64_t capacity, DropPolicy policy,
                                                 int64_t group = 1 << 30) {
  std::set<std::pair<int64_t, int64_t>> kept;
  for (int64_t g = 0; g * group <= all.back().token; ++g)
    for (int64_t e = 0; e < E; ++e) {
      std::vector<Assignment> mine;
      for (const auto& a : all)
        if (a.expert == e && a.token / group == g) mine.push_back(a);
      if (policy == DropPolicy::kProbs)
        std::stable_sort(mine.begin(), mine.end(), [](const Assignment& a, const Assignment& b) {
          return a.weight > b.weight;
        });
      for (size_t i = 0; i < mine.size() && (capacity <= 0 || static_cast<int64_t>(i) < capacity);
           ++i)
        kept.insert({mine[i].token, mine[i].k});
    }
  return kept;
}

std::pair<torch::Tensor, torch::Tensor> random_routing(int64_t T, int64_t K, int64_t E) {
  std::vector<torch::Tensor> rows;  // K distinct experts per token
  for (int64_t t = 0; t < T; ++t) rows.push_back(torch::randperm(E).narrow(0, 0, K));
  auto idx = torch::stack(rows);
  auto w = torch::softmax(torch::randn({T, K}, torch::kDouble), -1);
  return {idx, w};
}

}  // namespace

TEST_CASE("expert capacity is ceil(cf * T * K / E), 0 when dropless") {
  CHECK(expert_capacity(0.0, 100, 2, 8) == 0);
  CHECK(expert_capacity(1.0, 100, 2, 8) == 25);
  CHECK(expert_capacity(1.25, 10, 1, 4) == 4);  // 3.125 -> 4
}

TEST_CASE("dropless permutation groups rows by expert in token order and round-trips") {
  torch::manual_seed(4);
  const int64_t T = 12, K = 2, E = 5, D = 3;
  auto [idx, w] = random_routing(T, K, E);
  auto plan = make_permute_plan(idx, w, E, 0, DropPolicy::kProbs);
  CHECK(plan.dropped == 0);
  CHECK(plan.source_token_N.size(0) == T * K);

  // Naive layout: for e in 0..E, tokens that chose e in increasing order.
  std::vector<int64_t> expected;
  for (int64_t e = 0; e < E; ++e)
    for (const auto& a : assignments(idx, w))
      if (a.expert == e) expected.push_back(a.token);
  for (size_t n = 0; n < expected.size(); ++n)
    CHECK(plan.source_token_N[n].item<int64_t>() == expected[n]);

  // With the identity as every expert, unpermute(permute(x)) = x * sum_k w.
  auto x = torch::randn({T, D}, torch::kDouble);
  auto back = unpermute_tokens(permute_tokens(x, plan), plan);
  CHECK(torch::allclose(back, x * w.sum(1, true)));
}

TEST_CASE("capacity keeps what the naive rule keeps, for both drop policies") {
  torch::manual_seed(5);
  const int64_t T = 20, K = 2, E = 4;
  for (auto policy : {DropPolicy::kProbs, DropPolicy::kPosition}) {
    auto [idx, w] = random_routing(T, K, E);
    const int64_t capacity = expert_capacity(0.5, T, K, E);  // forces drops
    auto plan = make_permute_plan(idx, w, E, capacity, policy);
    auto all = assignments(idx, w);
    auto kept = naive_kept(all, E, capacity, policy);
    CHECK(plan.dropped == static_cast<int64_t>(all.size() - kept.size()));
    CHECK(plan.dropped > 0);

    // Each kept row: its weight identifies the assignment (weights are distinct).
    std::set<std::pair<int64_t, int64_t>> got;
    int64_t row = 0;
    for (int64_t e = 0; e < E; ++e) {
      CHECK(plan.counts[e] <= capacity);
      int64_t last_token = -1;
      for (int64_t i = 0; i < plan.counts[e]; ++i, ++row) {
        const int64_t t = plan.source_token_N[row].item<int64_t>();
        CHECK(t >= last_token);  // token order inside an expert
        last_token = t;
        for (int64_t k = 0; k < K; ++k)
          if (idx[t][k].item<int64_t>() == e) {
            CHECK(plan.weight_N[row].item<double>() == w[t][k].item<double>());
            got.insert({t, k});
          }
      }
    }
    CHECK(got == kept);
  }
}

TEST_CASE("combine weights carry gradients back to the router") {
  const int64_t T = 6, K = 2, E = 3;
  torch::manual_seed(6);
  auto [idx, w0] = random_routing(T, K, E);
  auto w = w0.clone().requires_grad_(true);
  auto plan = make_permute_plan(idx, w, E, 0, DropPolicy::kPosition);
  auto x = torch::randn({T, 2}, torch::kDouble);
  unpermute_tokens(permute_tokens(x, plan), plan).sum().backward();
  // d/dw_tk of sum_t sum_k w_tk * x_t = sum_d x_td
  auto expected = x.sum(1, true).expand({T, K});
  CHECK(torch::allclose(w.grad(), expected));
}

TEST_CASE("capacity groups: each group of tokens has its own capacity per expert") {
  torch::manual_seed(18);
  const int64_t T = 24, K = 2, E = 4, G = 8;
  for (auto policy : {DropPolicy::kProbs, DropPolicy::kPosition}) {
    auto [idx, w] = random_routing(T, K, E);
    const int64_t capacity = expert_capacity(0.5, G, K, E);  // 2 per group and expert
    auto plan = make_permute_plan(idx, w, E, capacity, policy, G);
    auto all = assignments(idx, w);
    auto kept = naive_kept(all, E, capacity, policy, G);
    CHECK(plan.dropped == static_cast<int64_t>(all.size() - kept.size()));
    std::set<std::pair<int64_t, int64_t>> got;
    int64_t row = 0;
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t i = 0; i < plan.counts[e]; ++i, ++row) {
        const int64_t t = plan.source_token_N[row].item<int64_t>();
        for (int64_t k = 0; k < K; ++k)
          if (idx[t][k].item<int64_t>() == e) got.insert({t, k});
      }
    }
    CHECK(got == kept);
    // The same tokens as three separate batches drop exactly the same.
    int64_t dropped = 0;
    for (int64_t g = 0; g < T / G; ++g) {
      dropped +=
          make_permute_plan(idx.narrow(0, g * G, G), w.narrow(0, g * G, G), E, capacity, policy)
              .dropped;
    }
    CHECK(dropped == plan.dropped);
  }
}
