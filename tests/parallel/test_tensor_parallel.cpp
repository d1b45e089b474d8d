// Tensor parallelism under mpiexec (every rank of the world is one TP group):
// each split layer computes, forward and backward, what the unsplit layer
// computes, and holds exactly its slice of the unsplit layer's weights.
#include <catch2/catch.hpp>

#include "core/model/attention.h"
#include "experts/experts.h"
#include "experts/swiglu.h"
#include "parallel/differentiable.h"
#include "parallel/mpi_communicator.h"
#include "parallel/tensor_parallel.h"

using namespace moxie;

namespace {

constexpr double kTol = 1e-10;  // float64 throughout: only summation order differs

bool close(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && torch::allclose(a, b, kTol, kTol);
}

ModelOptions small_model(int tp) {
  ModelOptions m;
  m.d_model = 16;
  m.n_heads = 2 * tp;
  m.n_kv_heads = tp;
  m.head_dim = 4;
  m.max_seq_len = 64;
  m.init_std = 0.3;
  return m;
}

}  // namespace

TEST_CASE("ParallelLinear holds its block of the layout-independent full weight") {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int n = comm.size(), r = comm.rank();
  TensorParallel tp{&comm};
  for (auto split : {Split::kColumn, Split::kRow}) {
    torch::manual_seed(3);
    ParallelLinear full(6 * n, 300, split, TensorParallel{}, 0.1);  // 300 rows: three init blocks
    const auto after_full = torch::randint(0, 1 << 30, {1}).item<int64_t>();
    torch::manual_seed(3);
    ParallelLinear mine(6 * n, 300, split, tp, 0.1);
    const auto after_mine = torch::randint(0, 1 << 30, {1}).item<int64_t>();
    CHECK(after_full == after_mine);  // the global generator advanced alike
    const int dim = split == Split::kColumn ? 0 : 1;
    const int64_t width = full->weight.size(dim) / n;
    CHECK(torch::equal(mine->weight, full->weight.narrow(dim, r * width, width)));
  }
  CHECK(
      torch::allclose(ParallelLinear(64, 4096, Split::kColumn, TensorParallel{}, 0.5)->weight.std(),
                      torch::tensor(0.5), 0.02, 0));
}

TEST_CASE("all_gather_along and reduce_scatter_along are each other's adjoint") {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int n = comm.size(), r = comm.rank();
  auto mine = (torch::arange(2 * 3 * 4, torch::kDouble).view({2, 3, 4}) + 100 * r).requires_grad_();
  auto gathered = all_gather_along(comm, mine, 1);
  REQUIRE(gathered.sizes() == torch::IntArrayRef({2, 3 * n, 4}));
  for (int p = 0; p < n; ++p) {
    CHECK(torch::equal(gathered.narrow(1, 3 * p, 3).detach(),
                       torch::arange(24, torch::kDouble).view({2, 3, 4}) + 100 * p));
  }
  // d/dmine of sum over ranks of <w_rank, gathered>: the sum of every rank's w slice.
  auto w = torch::full({2, 3 * n, 4}, static_cast<double>(r + 1), torch::kDouble);
  (gathered * w).sum().backward();
  CHECK(torch::allclose(mine.grad(), torch::full({2, 3, 4}, n * (n + 1) / 2.0, torch::kDouble)));

  auto part = (torch::ones({2, 2 * n, 3}, torch::kDouble) * (r + 1)).requires_grad_();
  auto scattered = reduce_scatter_along(comm, part, 1);
  CHECK(torch::allclose(scattered.detach(),
                        torch::full({2, 2, 3}, n * (n + 1) / 2.0, torch::kDouble)));
  auto v = torch::arange(12, torch::kDouble).view({2, 2, 3}) + 10 * r;
  (scattered * v).sum().backward();
  for (int p = 0; p < n; ++p) {
    CHECK(torch::equal(part.grad().narrow(1, 2 * p, 2),
                       torch::arange(12, torch::kDouble).view({2, 2, 3}) + 10 * p));
  }
}

TEST_CASE("vocab-parallel cross-entropy equals the full one, value and gradient") {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int n = comm.size(), r = comm.rank();
  const int64_t N = 7, Vl = 5, V = Vl * n;
  torch::manual_seed(11);
  auto full = (torch::randn({N, V}, torch::kDouble) * 4).requires_grad_();
  auto targets = torch::randint(0, V, {N}, torch::kLong);
  auto weights = torch::rand({N}, torch::kDouble);
  auto expected = torch::nn::functional::cross_entropy(
      full, targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  (expected * weights).sum().backward();

  auto local = full.detach().narrow(1, r * Vl, Vl).clone().requires_grad_();
  auto loss = vocab_parallel_cross_entropy(comm, local, targets, r * Vl);
  CHECK(close(loss.detach(), expected.detach()));
  (loss * weights).sum().backward();
  CHECK(close(local.grad(), full.grad().narrow(1, r * Vl, Vl)));
}

TEST_CASE("tensor-parallel attention and SwiGLU compute the unsplit layers on sequence slices") {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int n = comm.size(), r = comm.rank();
  TensorParallel tp{&comm};
  const auto m = small_model(n);
  const int64_t B = 2, S = 4 * n, D = m.d_model;
  torch::manual_seed(5);
  auto x = torch::randn({B, S, D}, torch::kDouble);
  auto dy = torch::randn({B, S, D}, torch::kDouble);
  auto slice = [&](const torch::Tensor& t) { return t.narrow(1, r * (S / n), S / n); };

  auto compare = [&](torch::nn::Module& full, torch::nn::Module& split, auto forward_full,
                     auto forward_split) {
    full.to(torch::kDouble);
    split.to(torch::kDouble);
    auto xf = x.clone().requires_grad_();
    auto yf = forward_full(xf);
    (yf * dy).sum().backward();
    auto xs = slice(x).clone().requires_grad_();
    auto ys = forward_split(xs);
    CHECK(close(ys.detach(), slice(yf.detach())));
    (ys * slice(dy)).sum().backward();
    CHECK(close(xs.grad(), slice(xf.grad())));
    // Every weight gradient is the full one's slice (rows or columns).
    auto fp = full.named_parameters();
    for (const auto& item : split.named_parameters()) {
      const auto& g_full = fp[item.key()].grad();
      const auto& g = item.value().grad();
      const int dim = g.size(0) != g_full.size(0) ? 0 : 1;
      const int64_t w = g.size(dim);
      INFO(item.key());
      CHECK(close(g, g_full.narrow(dim, r * w, w)));
    }
  };

  torch::manual_seed(8);
  Attention full_attn(m);
  torch::manual_seed(8);
  Attention split_attn(m, tp);
  compare(
      *full_attn, *split_attn, [&](const torch::Tensor& t) { return full_attn(t); },
      [&](const torch::Tensor& t) { return split_attn(t); });

  torch::manual_seed(9);
  SwiGLU full_mlp(D, 6 * n, 0.3);
  torch::manual_seed(9);
  SwiGLU split_mlp(D, 6 * n, 0.3, tp);
  compare(
      *full_mlp, *split_mlp, [&](const torch::Tensor& t) { return full_mlp(t); },
      [&](const torch::Tensor& t) { return split_mlp(t); });
}
