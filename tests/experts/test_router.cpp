// Router against naive per-token loops.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>

#include "experts/router.h"

using namespace moxie;

namespace {

MoEOptions options(int64_t E, int64_t K, ScoreFunc score = ScoreFunc::kSoftmax) {
  MoEOptions o;
  o.num_experts = E;
  o.top_k = K;
  o.score_func = score;
  o.aux_loss_coef = 0.0;
  return o;
}

// Top-k indices of one row by a plain sort (ties: lower index first, as topk on CPU).
std::vector<int64_t> naive_topk(const std::vector<double>& v, int64_t k) {
  std::vector<int64_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return v[a] > v[b]; });
  idx.resize(k);
  return idx;
}

}  // namespace

TEST_CASE("softmax router picks the naive top-k with renormalised weights") {
  torch::manual_seed(1);
  const int64_t T = 16, D = 8, E = 6, K = 2;
  Router router(D, options(E, K));
  torch::NoGradGuard g;
  router->weight.normal_(0, 1);
  auto x = torch::randn({T, D}, torch::kDouble);
  auto out = router(x);
  auto W = router->weight.to(torch::kDouble);
  std::vector<int64_t> counts(E, 0);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> logits(E), probs(E);
    for (int64_t e = 0; e < E; ++e) logits[e] = (W[e] * x[t]).sum().item<double>();
    const double mx = *std::max_element(logits.begin(), logits.end());
    double z = 0;
    for (int64_t e = 0; e < E; ++e) z += std::exp(logits[e] - mx);
    for (int64_t e = 0; e < E; ++e) probs[e] = std::exp(logits[e] - mx) / z;
    auto top = naive_topk(probs, K);
    double sum = 0;
    for (auto e : top) sum += probs[e];
    for (int64_t k = 0; k < K; ++k) {
      CHECK(out.expert_idx_TK[t][k].item<int64_t>() == top[k]);
      CHECK(out.weight_TK[t][k].item<double>() == Approx(probs[top[k]] / sum).epsilon(1e-12));
      counts[top[k]]++;
    }
  }
  for (int64_t e = 0; e < E; ++e) CHECK(out.tokens_per_expert_E[e].item<int64_t>() == counts[e]);
}

TEST_CASE("sigmoid router: the balancing bias moves selection, not the weights") {
  const int64_t D = 4, E = 4, K = 1;
  auto o = options(E, K, ScoreFunc::kSigmoid);
  o.bias_update_rate = 0.1;
  o.renormalize = false;
  Router router(D, o);
  torch::NoGradGuard g;
  router->weight.copy_(torch::eye(4));
  auto x = torch::tensor({{3.0, 1.0, 0.0, 0.0}});
  CHECK(router(x).expert_idx_TK[0][0].item<int64_t>() == 0);
  router->bias_E.copy_(torch::tensor({0.0, 0.5, 0.0, 0.0}));  // sigmoid(3)-sigmoid(1) ~ 0.22
  auto out = router(x);
  CHECK(out.expert_idx_TK[0][0].item<int64_t>() == 1);
  CHECK(out.weight_TK[0][0].item<double>() == Approx(1.0 / (1.0 + std::exp(-1.0))));
}

TEST_CASE("aux-loss-free bias update follows the load") {
  auto o = options(4, 1);
  o.bias_update_rate = 0.01;
  Router router(8, o);
  router->update_bias(torch::tensor({10, 2, 4, 4}));  // mean 5
  auto b = router->bias_E;
  CHECK(b[0].item<double>() == Approx(-0.01));
  CHECK(b[1].item<double>() == Approx(0.01));
  CHECK(b[2].item<double>() == Approx(0.01));
  Router off(8, options(4, 1));
  off->update_bias(torch::tensor({10, 2, 4, 4}));
  CHECK(off->bias_E.abs().sum().item<double>() == 0.0);
}

TEST_CASE("balance loss equals the naive Switch formula and is 1 when balanced") {
  torch::manual_seed(2);
  const int64_t T = 10, E = 5, K = 2;
  auto probs = torch::softmax(torch::randn({T, E}, torch::kDouble), -1);
  auto counts = torch::tensor({6, 2, 5, 3, 4});
  double naive = 0;
  for (int64_t e = 0; e < E; ++e) {
    double p = 0;
    for (int64_t t = 0; t < T; ++t) p += probs[t][e].item<double>() / T;
    naive += counts[e].item<double>() / T * p;
  }
  naive *= static_cast<double>(E) / K;
  CHECK(switch_balance_loss(probs, counts, K).item<double>() == Approx(naive).epsilon(1e-12));
  auto uniform = torch::full({T, E}, 1.0 / E, torch::kDouble);
  CHECK(switch_balance_loss(uniform, torch::full({E}, T * K / E), K).item<double>() == Approx(1.0));
}

TEST_CASE("router losses: coefficients and z-loss") {
  torch::manual_seed(3);
  auto o = options(4, 2);
  o.aux_loss_coef = 0.5;
  o.z_loss_coef = 0.25;
  Router router(6, o);
  auto x = torch::randn({7, 6});
  auto out = router(x);
  auto logits = torch::mm(x, router->weight.t()).to(torch::kDouble);
  double z = 0;
  for (int64_t t = 0; t < 7; ++t) {
    double s = 0;
    for (int64_t e = 0; e < 4; ++e) s += std::exp(logits[t][e].item<double>());
    z += std::pow(std::log(s), 2) / 7;
  }
  const double expected = 0.5 * out.balance_loss.item<double>() + 0.25 * z;
  CHECK(out.aux_loss.item<double>() == Approx(expected).epsilon(1e-5));
  // The aux loss trains the router.
  out.aux_loss.backward();
  CHECK(router->weight.grad().abs().sum().item<double>() > 0);
}
