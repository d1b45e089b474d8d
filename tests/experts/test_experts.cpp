// Grouped SwiGLU (hand-written backward) against the per-token autograd reference.
#include <catch2/catch.hpp>

#include "experts/experts.h"
#include "experts/grouped_swiglu.h"

using namespace moxie;

namespace {

struct Grads {
  torch::Tensor y, x, w13, w2;
};

Grads run(bool grouped, const torch::Tensor& x0, const torch::Tensor& w13_0,
          const torch::Tensor& w2_0, const std::vector<int64_t>& counts,
          const torch::Tensor& upstream) {
  auto x = x0.clone().requires_grad_(true);
  auto w13 = w13_0.clone().requires_grad_(true);
  auto w2 = w2_0.clone().requires_grad_(true);
  auto y =
      grouped ? grouped_swiglu(x, w13, w2, counts) : grouped_swiglu_reference(x, w13, w2, counts);
  (y * upstream).sum().backward();
  return {y.detach(), x.grad(), w13.grad(), w2.grad()};
}

}  // namespace

TEST_CASE("grouped SwiGLU forward and backward match the per-token reference") {
  torch::manual_seed(7);
  const int64_t E = 4, D = 6, H = 5;
  const std::vector<int64_t> counts = {3, 0, 5, 1};  // an expert with no tokens
  const int64_t N = 9;
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto x = torch::randn({N, D}, opts);
  auto w13 = torch::randn({E, 2 * H, D}, opts) * 0.5;
  auto w2 = torch::randn({E, D, H}, opts) * 0.5;
  auto upstream = torch::randn({N, D}, opts);

  auto fast = run(true, x, w13, w2, counts, upstream);
  auto ref = run(false, x, w13, w2, counts, upstream);
  CHECK(torch::allclose(fast.y, ref.y, 1e-12, 1e-12));
  CHECK(torch::allclose(fast.x, ref.x, 1e-12, 1e-12));
  CHECK(torch::allclose(fast.w13, ref.w13, 1e-12, 1e-12));
  CHECK(torch::allclose(fast.w2, ref.w2, 1e-12, 1e-12));
  CHECK(fast.w13[1].abs().sum().item<double>() == 0.0);  // idle expert: zero gradient
}

TEST_CASE("grouped SwiGLU in float32 stays within float tolerance") {
  torch::manual_seed(8);
  const std::vector<int64_t> counts = {17, 9, 30};
  auto x = torch::randn({56, 32});
  auto w13 = torch::randn({3, 48, 32}) * 0.1;
  auto w2 = torch::randn({3, 32, 24}) * 0.1;
  auto up = torch::randn({56, 32});
  auto fast = run(true, x, w13, w2, counts, up);
  auto ref = run(false, x.to(torch::kDouble), w13.to(torch::kDouble), w2.to(torch::kDouble), counts,
                 up.to(torch::kDouble));
  CHECK(torch::allclose(fast.y.to(torch::kDouble), ref.y, 1e-4, 1e-5));
  CHECK(torch::allclose(fast.w13.to(torch::kDouble), ref.w13, 1e-4, 1e-5));
}

TEST_CASE("grouped SwiGLU rejects counts that do not fit") {
  auto x = torch::randn({4, 2});
  auto w13 = torch::randn({2, 6, 2});
  auto w2 = torch::randn({2, 2, 3});
  CHECK_THROWS_WITH(grouped_swiglu(x, w13, w2, {1, 2}), Catch::Contains("sum to 3"));
  CHECK_THROWS_WITH(grouped_swiglu(x, w13, w2, {4}), Catch::Contains("for 2 experts"));
}

TEST_CASE("Experts registers stacked weights with the documented shapes") {
  Experts experts(3, 8, 5);
  auto params = experts->named_parameters();
  CHECK(params["w13"].sizes() == torch::IntArrayRef({3, 10, 8}));
  CHECK(params["w2"].sizes() == torch::IntArrayRef({3, 8, 5}));
}

TEST_CASE("segments may name their expert: several per expert, any order, some experts none") {
  torch::manual_seed(19);
  const int64_t E = 3, D = 4, H = 5;
  const std::vector<int64_t> rows = {2, 0, 3, 1, 2};     // five segments
  const std::vector<int64_t> experts = {1, 0, 1, 2, 1};  // expert 1 three times, 0 empty
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto x = torch::randn({8, D}, opts);
  auto w13 = torch::randn({E, 2 * H, D}, opts);
  auto w2 = torch::randn({E, D, H}, opts);
  auto up = torch::randn({8, D}, opts);
  auto run_with = [&](bool grouped) {
    auto xi = x.clone().requires_grad_(true);
    auto a = w13.clone().requires_grad_(true);
    auto b = w2.clone().requires_grad_(true);
    auto y = grouped ? grouped_swiglu(xi, a, b, rows, experts)
                     : grouped_swiglu_reference(xi, a, b, rows, experts);
    (y * up).sum().backward();
    return std::vector<torch::Tensor>{y.detach(), xi.grad(), a.grad(), b.grad()};
  };
  auto fast = run_with(true), ref = run_with(false);
  for (size_t i = 0; i < fast.size(); ++i) CHECK(torch::allclose(fast[i], ref[i], 1e-12, 1e-12));
  CHECK(fast[2][0].abs().sum().item<double>() == 0.0);
  CHECK_THROWS_WITH(grouped_swiglu(x, w13, w2, rows, {1, 0, 1, 3, 1}),
                    Catch::Contains("segment expert 3"));
}
