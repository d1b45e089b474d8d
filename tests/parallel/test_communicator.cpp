// MPI communicator under mpiexec: every collective against the result each
// rank can compute alone from the (deterministic) inputs of all ranks.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>

#include "parallel/differentiable.h"
#include "parallel/grad_sync.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_groups.h"
#include "parallel/zero.h"

using namespace moxie;

namespace {
// What rank r contributes: a deterministic function of r.
torch::Tensor input_of(int r, int64_t n = 6) {
  return torch::arange(n, torch::kFloat) * (r + 1) + r;
}
}  // namespace

TEST_CASE("all_reduce: sum, average and max") {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  auto expected_sum = torch::zeros({6});
  auto expected_max = input_of(0);
  for (int r = 0; r < n; ++r) {
    expected_sum += input_of(r);
    expected_max = torch::maximum(expected_max, input_of(r));
  }
  auto t = input_of(comm.rank());
  comm.all_reduce(t, ReduceOp::kSum);
  CHECK(torch::equal(t, expected_sum));
  t = input_of(comm.rank()).to(torch::kDouble);
  comm.all_reduce(t, ReduceOp::kAvg);
  CHECK(torch::allclose(t, expected_sum.to(torch::kDouble) / n));
  t = input_of(comm.rank());
  comm.all_reduce(t, ReduceOp::kMax);
  CHECK(torch::equal(t, expected_max));
  auto bf = torch::ones({2}, torch::kBFloat16);
  CHECK_THROWS_WITH(comm.all_reduce(bf, ReduceOp::kSum),
                    Catch::Contains("reduce gradients in float32"));
}

TEST_CASE("all_gather, reduce_scatter and broadcast") {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < n; ++r) parts.push_back(input_of(r).view({2, 3}));
  CHECK(torch::equal(comm.all_gather(input_of(comm.rank()).view({2, 3})), torch::cat(parts)));

  // reduce_scatter of [n*2, 3]: rank r gets rows [2r, 2r+2) of the sum.
  auto big = [&](int r) { return torch::arange(n * 6, torch::kFloat).view({n * 2, 3}) * (r + 1); };
  auto sum = torch::zeros({n * 2, 3});
  for (int r = 0; r < n; ++r) sum += big(r);
  CHECK(torch::equal(comm.reduce_scatter(big(comm.rank()), ReduceOp::kSum),
                     sum.narrow(0, 2 * comm.rank(), 2)));

  auto b = input_of(comm.rank());
  comm.broadcast(b, n - 1);
  CHECK(torch::equal(b, input_of(n - 1)));
  comm.barrier();
}

TEST_CASE("all_to_all with uneven and empty splits, and its gradient") {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int n = comm.size(), me = comm.rank();
  // Rank s sends (s + p) % 3 rows to rank p; row values encode (source, dest, k).
  auto rows_from_to = [](int s, int p) { return static_cast<int64_t>((s + p) % 3); };
  std::vector<int64_t> send(n), recv(n);
  std::vector<torch::Tensor> mine;
  for (int p = 0; p < n; ++p) {
    send[p] = rows_from_to(me, p);
    recv[p] = rows_from_to(p, me);
    for (int64_t k = 0; k < send[p]; ++k)
      mine.push_back(torch::tensor({{1.0 * me, 1.0 * p, 1.0 * k}}));
  }
  auto input = mine.empty() ? torch::zeros({0, 3}) : torch::cat(mine);
  auto x = input.clone().requires_grad_(true);
  auto out = differentiable_all_to_all(comm, x, send, recv);
  std::vector<torch::Tensor> expected;
  for (int s = 0; s < n; ++s)
    for (int64_t k = 0; k < rows_from_to(s, me); ++k)
      expected.push_back(torch::tensor({{1.0 * s, 1.0 * me, 1.0 * k}}));
  CHECK(torch::equal(out.detach(), expected.empty() ? torch::zeros({0, 3}) : torch::cat(expected)));

  // d(sum(out * w))/dx: each sent row gets back the weight its receiver applied.
  auto w = out.detach() * 10 + 1;
  (out * w).sum().backward();
  CHECK(torch::equal(x.grad(), input * 10 + 1));
}

namespace {
// Forwards to an MPI communicator but keeps Communicator's default
// all_to_all_async, the one a backend without nonblocking collectives gets.
class BlockingOnly : public Communicator {
 public:
  explicit BlockingOnly(Communicator& c) : c_(c) {}
  int rank() const override { return c_.rank(); }
  int size() const override { return c_.size(); }
  void all_reduce(torch::Tensor& t, ReduceOp op) override { c_.all_reduce(t, op); }
  torch::Tensor all_gather(const torch::Tensor& t) override { return c_.all_gather(t); }
  torch::Tensor reduce_scatter(const torch::Tensor& t, ReduceOp op) override {
    return c_.reduce_scatter(t, op);
  }
  void broadcast(torch::Tensor& t, int root) override { c_.broadcast(t, root); }
  void barrier() override { c_.barrier(); }
  torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                           const std::vector<int64_t>& recv_rows) override {
    return c_.all_to_all(input, send_rows, recv_rows);
  }

 private:
  Communicator& c_;
};
}  // namespace

TEST_CASE("all_to_all_async into a given tensor, with this rank's rows copied or left in place") {
  MpiCommunicator mpi(MPI_COMM_WORLD);
  BlockingOnly blocking(mpi);
  const int n = mpi.size(), me = mpi.rank();
  // Rank s sends s + 2p + 1 rows to rank p, valued (source, dest, k).
  std::vector<int64_t> send(n), recv(n);
  std::vector<torch::Tensor> mine;
  for (int p = 0; p < n; ++p) {
    send[p] = me + 2 * p + 1;
    recv[p] = p + 2 * me + 1;
    for (int64_t k = 0; k < send[p]; ++k)
      mine.push_back(torch::tensor({{1.0f * me, 1.0f * p, 1.0f * k}}));
  }
  auto input = torch::cat(mine);
  auto expected = mpi.all_to_all(input, send, recv);
  int64_t self_at = 0;
  for (int p = 0; p < me; ++p) self_at += recv[p];
  for (Communicator* comm : std::vector<Communicator*>{&mpi, &blocking}) {
    auto out = torch::full(expected.sizes(), -7.0f);
    auto op = comm->all_to_all_async(input, send, recv, out, SelfRows::kCopy);
    op->wait();
    op->wait();  // a second wait is a no-op
    CHECK(torch::equal(out, expected));

    auto in_place = torch::full(expected.sizes(), -7.0f);
    comm->all_to_all_async(input, send, recv, in_place, SelfRows::kInPlace)->wait();
    auto want = expected.clone();
    want.narrow(0, self_at, recv[me]).fill_(-7.0f);
    CHECK(torch::equal(in_place, want));
  }
  auto wrong = torch::empty({expected.size(0) + 1, 3});
  CHECK_THROWS_WITH(mpi.all_to_all_async(input, send, recv, wrong, SelfRows::kCopy),
                    Catch::Contains("all_to_all_async: out must be"));
}

TEST_CASE("a reusable buffer hands out memory again only once nothing else holds it") {
  ReusableBuffer buffer;
  auto opts = torch::TensorOptions().dtype(torch::kFloat);
  auto a = buffer.get({4, 3}, opts);
  a.fill_(1);
  auto b = buffer.get({4, 3}, opts);  // `a` is still held: fresh memory
  CHECK(b.data_ptr() != a.data_ptr());
  b.fill_(2);
  CHECK(torch::equal(a, torch::ones({4, 3})));
  const void* b_memory = b.data_ptr();
  b = torch::Tensor();
  auto c = buffer.get({3, 3}, opts);  // smaller, and `b`'s memory is free again
  CHECK(c.data_ptr() == b_memory);
  auto view_of_c = c.narrow(0, 1, 1);
  c = torch::Tensor();
  auto d = buffer.get({3, 3}, opts);  // a view still reads it
  CHECK(d.data_ptr() != b_memory);
  CHECK(buffer.get({2, 2}, opts.dtype(torch::kDouble)).scalar_type() == torch::kDouble);
}

TEST_CASE("process groups follow the documented rank order") {
  MpiCommunicator world(MPI_COMM_WORLD);
  if (world.size() != 4) {
    WARN("process-group layout checks need 4 ranks; this run has " << world.size());
    return;
  }
  ParallelOptions o;
  o.dp = 2;
  o.tp = 2;
  o.ep = 2;
  ParallelDims dims(o, 4, 8, 4, 2);
  auto g = make_process_groups(dims, world);
  const int r = world.rank();
  CHECK(g.tp_index == r % 2);
  CHECK(g.dp_index == r / 2);
  CHECK(g.tp->size() == 2);
  CHECK(g.dp->size() == 2);
  CHECK(g.ep->size() == 2);
  CHECK(g.expert_dp->size() == 2);
  // One node here: local rank = world rank; and it agrees with Open MPI's own variable.
  CHECK(g.local_size == 4);
  CHECK(g.local_rank == r);
  if (const char* ompi = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK"))
    CHECK(std::atoi(ompi) == g.local_rank);
  // The members of each group, seen through an all_gather of world ranks.
  auto members = [&](Communicator& c) { return c.all_gather(torch::tensor({int64_t{r}})); };
  CHECK(torch::equal(members(*g.tp), torch::tensor({r / 2 * 2, r / 2 * 2 + 1})));
  CHECK(torch::equal(members(*g.dp), torch::tensor({r % 2, r % 2 + 2})));
  CHECK(torch::equal(members(*g.expert_dp), torch::tensor({r % 2, r % 2 + 2})));

  auto wrong = o;
  wrong.dp = 1;
  CHECK_THROWS_WITH(make_process_groups(ParallelDims(wrong, 2, 8, 4, 2), world),
                    Catch::Contains("the job has 4 ranks but the layout needs 2"));
}

TEST_CASE("ZeRO-1 owners: every parameter owned once, shares balanced within one parameter") {
  std::vector<torch::Tensor> params;
  for (int64_t n : {1000, 10, 300, 300, 7, 500, 64, 64, 2000, 1})
    params.push_back(torch::zeros({n}));
  for (int ranks : {1, 2, 3, 4}) {
    auto owners = zero1_owners(params, ranks);
    std::vector<int64_t> load(ranks, 0);
    for (size_t i = 0; i < params.size(); ++i) {
      REQUIRE(owners[i] >= 0);
      REQUIRE(owners[i] < ranks);
      load[owners[i]] += params[i].numel();
    }
    const auto [lo, hi] = std::minmax_element(load.begin(), load.end());
    CHECK(*hi - *lo <= 2000);  // at most the largest parameter apart
  }
}

TEST_CASE("ZeRO-1 hands every rank the owners' updated values") {
  MpiCommunicator comm(MPI_COMM_WORLD);
  std::vector<torch::Tensor> params = {torch::zeros({5}), torch::zeros({3}), torch::zeros({4})};
  const auto owners = zero1_owners(params, comm.size());
  Zero1Partition zero(params, owners, comm);
  for (auto& p : zero.owned()) p.fill_(comm.rank() + 1);  // "update" what this rank owns
  zero.broadcast_updates();
  for (size_t i = 0; i < params.size(); ++i) {
    CHECK(torch::equal(params[i], torch::full_like(params[i], owners[i] + 1)));
  }
}

TEST_CASE("gradient sync: bucketed sums, and overlapped with backward the same") {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int n = comm.size(), r = comm.rank();
  auto make = [] {
    std::vector<torch::Tensor> ps;
    for (int i = 0; i < 5; ++i) ps.push_back(torch::zeros({3 + i, 4}).requires_grad_());
    return ps;
  };
  // d loss / d p_i = (r + 1) (i + 1) on rank r; the average is (i + 1)(n + 1) / 2.
  auto backward = [&](const std::vector<torch::Tensor>& ps) {
    auto loss = torch::zeros({});
    for (size_t i = 0; i < ps.size(); ++i) loss = loss + (ps[i] * ((r + 1.0) * (i + 1.0))).sum();
    loss.backward();
  };
  auto check = [&](const std::vector<torch::Tensor>& ps, double times) {
    for (size_t i = 0; i < ps.size(); ++i) {
      CHECK(torch::allclose(ps[i].grad(),
                            torch::full_like(ps[i], times * (i + 1.0) * (n + 1) / 2.0)));
    }
  };
  auto plain = make();
  GradientSync blocking(plain, comm, 1.0 / n, /*bucket_bytes=*/64);
  backward(plain);
  blocking.sync();
  check(plain, 1);

  auto overlapped = make();
  GradientSync early(overlapped, comm, 1.0 / n, /*bucket_bytes=*/64, /*overlap=*/true);
  REQUIRE(early.num_buckets() > 1);
  // Accumulation: an unarmed backward leaves the hooks idle; the armed one
  // starts every bucket before backward returns.
  backward(overlapped);
  early.arm();
  backward(overlapped);
  CHECK(early.started_in_backward() == early.num_buckets());
  early.sync();
  check(overlapped, 2);
}
