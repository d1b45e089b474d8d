// Token dispatchers: local, and all-to-all over the EP group.
#include "experts/dispatcher.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace moxie {

PermutePlan plan_routing(const MoEOptions& options, const RouterOutput& routing, int64_t num_tokens,
                         int64_t capacity_group) {
  const int64_t group = capacity_group > 0 ? capacity_group : num_tokens;
  const int64_t capacity =
      expert_capacity(options.capacity_factor, group, options.top_k, options.num_experts);
  return make_permute_plan(routing.expert_idx_TK, routing.weight_TK, options.num_experts, capacity,
                           options.drop_policy, group);
}

LocalTokenDispatcher::LocalTokenDispatcher(const MoEOptions& options) : options_(options) {}

Dispatched LocalTokenDispatcher::dispatch(const torch::Tensor& x_TD, const RouterOutput& routing,
                                          int64_t capacity_group) {
  Dispatched out;
  out.plan = plan_routing(options_, routing, x_TD.size(0), capacity_group);
  out.tokens_ND = permute_tokens(x_TD, out.plan);
  out.segment_rows = out.plan.counts;
  return out;
}

torch::Tensor LocalTokenDispatcher::combine(const torch::Tensor& expert_out_ND,
                                            const Dispatched& dispatched) {
  return unpermute_tokens(expert_out_ND, dispatched.plan);
}

AllToAllTokenDispatcher::AllToAllTokenDispatcher(const MoEOptions& options, Communicator& ep_group)
    : options_(options), ep_group_(ep_group) {
  if (options.num_experts % ep_group.size() != 0) {
    throw std::invalid_argument("moe.num_experts=" + std::to_string(options.num_experts) +
                                " is not divisible by the expert-parallel size " +
                                std::to_string(ep_group.size()));
  }
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Where this rank's rows to itself lie: rows [send, send + rows) of the
// permuted order are rows [recv, recv + rows) of what its experts receive.
struct SelfBlock {
  int64_t send = 0, recv = 0, rows = 0;
};

SelfBlock self_block(const std::vector<int64_t>& send_rows, const std::vector<int64_t>& recv_rows,
                     int me) {
  SelfBlock b;
  for (int p = 0; p < me; ++p) {
    b.send += send_rows[p];
    b.recv += recv_rows[p];
  }
  b.rows = send_rows[me];
  return b;
}

// What the CPU exchange functions need besides tensors.
struct Exchange {
  Communicator* comm = nullptr;
  std::vector<int64_t> send_rows, recv_rows;
  ReusableBuffer* buffer = nullptr;
  std::shared_ptr<PendingOp>* arriving = nullptr;
  // Dispatch only: the count exchange in flight, and where its counts land.
  PendingOp* counts = nullptr;
  const int64_t* counts_recv = nullptr;
  int64_t local = 0;
};

void copy_rows(const char* from, const int64_t* src, int64_t begin, int64_t end, size_t row_bytes,
               char* to) {
  for (int64_t n = begin; n < end; ++n)
    std::memcpy(to + (n - begin) * row_bytes, from + src[n] * row_bytes, row_bytes);
}

// CPU dispatch: [T, D] -> the rows this rank's experts receive. Rows for
// peers are permuted straight into the send buffer (while the counts are
// exchanged), rows for this rank straight into the receive buffer (while the
// exchange is in flight). Backward: the full exchange back, then each token
// sums its rows' gradients in row order (index_select's backward).
struct PermuteExchangeFn : public torch::autograd::Function<PermuteExchangeFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor src_N,
                               Exchange* ex, ReusableBuffer* send_buffer) {
    auto x_TD = x.contiguous();
    Communicator& comm = *ex->comm;
    const int ep = comm.size(), me = comm.rank();
    const int64_t N = src_N.size(0), D = x_TD.size(1);
    const int64_t* src = src_N.data_ptr<int64_t>();
    const size_t row_bytes = static_cast<size_t>(D) * x_TD.element_size();
    const auto* from = static_cast<const char*>(x_TD.data_ptr());
    // send_rows is known here; recv_rows once the counts arrive.
    int64_t self_begin = 0;
    for (int p = 0; p < me; ++p) self_begin += ex->send_rows[p];
    const int64_t self_end = self_begin + ex->send_rows[me];
    auto send_ND = send_buffer->get({N, D}, x_TD.options());
    auto* send = static_cast<char*>(send_ND.data_ptr());
    copy_rows(from, src, 0, self_begin, row_bytes, send);
    copy_rows(from, src, self_end, N, row_bytes, send + self_end * row_bytes);
    ex->counts->wait();
    ex->recv_rows.assign(ep, 0);
    for (int p = 0; p < ep; ++p) {
      for (int64_t e = 0; e < ex->local; ++e)
        ex->recv_rows[p] += ex->counts_recv[p * ex->local + e];
    }
    const auto self = self_block(ex->send_rows, ex->recv_rows, me);
    int64_t R = 0;
    for (auto r : ex->recv_rows) R += r;
    auto recv_ND = ex->buffer->get({R, D}, x_TD.options());
    *ex->arriving =
        comm.all_to_all_async(send_ND, ex->send_rows, ex->recv_rows, recv_ND, SelfRows::kInPlace);
    copy_rows(from, src, self.send, self.send + self.rows, row_bytes,
              static_cast<char*>(recv_ND.data_ptr()) + self.recv * row_bytes);
    ctx->save_for_backward({src_N});
    ctx->saved_data["T"] = x_TD.size(0);
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(ex->comm);
    ctx->saved_data["send"] = c10::IValue(ex->send_rows);
    ctx->saved_data["recv"] = c10::IValue(ex->recv_rows);
    return recv_ND;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    const auto src_N = ctx->get_saved_variables()[0];
    auto g_ND = comm->all_to_all(grads[0].contiguous(), ctx->saved_data["recv"].toIntVector(),
                                 ctx->saved_data["send"].toIntVector());
    auto dx = torch::zeros({ctx->saved_data["T"].toInt(), g_ND.size(1)}, g_ND.options())
                  .index_add_(0, src_N, g_ND);
    return {dx, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// out[t] = sum over token t's rows n, in increasing n, of w[n] * row(n): the
// additions of unpermute_tokens' index_add in its order, in one pass.
template <typename T, typename RowOf>
void weighted_sum_rows(RowOf row_of, const T* w, const int64_t* src, int64_t N, int64_t D,
                       int64_t num_tokens, T* out) {
  std::vector<int64_t> start(num_tokens + 1, 0), rows(N);
  for (int64_t n = 0; n < N; ++n) ++start[src[n] + 1];
  for (int64_t t = 0; t < num_tokens; ++t) start[t + 1] += start[t];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t n = 0; n < N; ++n) rows[fill[src[n]]++] = n;
  for (int64_t t = 0; t < num_tokens; ++t) {
    T* o = out + t * D;
    std::fill(o, o + D, T(0));
    for (int64_t j = start[t]; j < start[t + 1]; ++j) {
      const T* r = row_of(rows[j]);
      const T wj = w[rows[j]];
      for (int64_t d = 0; d < D; ++d) o[d] += wj * r[d];
    }
  }
}

// CPU combine: the experts' rows [R, D] back home, then [T, D] as
// unpermute_tokens computes it, reading peers' rows from the receive buffer
// and this rank's rows from the experts' output, where each lies. Backward:
// unpermute_tokens' own, then the full exchange back.
struct ExchangeUnpermuteFn : public torch::autograd::Function<ExchangeUnpermuteFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor y, torch::Tensor weight_N,
                               torch::Tensor src_N, int64_t num_tokens, Exchange* ex) {
    auto y_RD = y.contiguous();
    Communicator& comm = *ex->comm;
    const int64_t N = src_N.size(0), D = y_RD.size(1);
    const auto self = self_block(ex->send_rows, ex->recv_rows, comm.rank());
    auto home_ND = ex->buffer->get({N, D}, y_RD.options());
    comm.all_to_all_async(y_RD, ex->recv_rows, ex->send_rows, home_ND, SelfRows::kInPlace)->wait();
    auto w_N = weight_N.to(y_RD.scalar_type()).contiguous();
    ctx->save_for_backward({y_RD, home_ND, w_N, src_N});
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(weight_N.scalar_type());
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(ex->comm);
    ctx->saved_data["send"] = c10::IValue(ex->send_rows);
    ctx->saved_data["recv"] = c10::IValue(ex->recv_rows);
    const auto type = y_RD.scalar_type();
    if (type != torch::kFloat && type != torch::kDouble) {
      auto rows_ND = home_ND.clone();
      rows_ND.narrow(0, self.send, self.rows).copy_(y_RD.narrow(0, self.recv, self.rows));
      return torch::zeros({num_tokens, D}, y_RD.options())
          .index_add_(0, src_N, rows_ND * w_N.unsqueeze(1));
    }
    auto out = torch::empty({num_tokens, D}, y_RD.options());
    AT_DISPATCH_FLOATING_TYPES(type, "exchange_unpermute", [&] {
      const scalar_t* home = home_ND.data_ptr<scalar_t>();
      const scalar_t* mine = y_RD.data_ptr<scalar_t>() + (self.recv - self.send) * D;
      auto row_of = [&](int64_t n) {
        return (n >= self.send && n < self.send + self.rows ? mine : home) + n * D;
      };
      weighted_sum_rows(row_of, w_N.data_ptr<scalar_t>(), src_N.data_ptr<int64_t>(), N, D,
                        num_tokens, out.data_ptr<scalar_t>());
    });
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    const auto send_rows = ctx->saved_data["send"].toIntVector();
    const auto recv_rows = ctx->saved_data["recv"].toIntVector();
    const auto saved = ctx->get_saved_variables();
    const auto &y_RD = saved[0], &home_ND = saved[1], &w_N = saved[2], &src_N = saved[3];
    const auto self = self_block(send_rows, recv_rows, comm->rank());
    auto g_ND = grads[0].index_select(0, src_N);
    auto d_home_ND = g_ND * w_N.unsqueeze(1);
    // Each row's weight gradient against that row where it lies.
    auto dw = torch::empty({g_ND.size(0)}, g_ND.options());
    const int64_t N = g_ND.size(0), after = self.send + self.rows;
    dw.narrow(0, 0, self.send)
        .copy_((g_ND.narrow(0, 0, self.send) * home_ND.narrow(0, 0, self.send)).sum(1));
    dw.narrow(0, self.send, self.rows)
        .copy_(
            (g_ND.narrow(0, self.send, self.rows) * y_RD.narrow(0, self.recv, self.rows)).sum(1));
    dw.narrow(0, after, N - after)
        .copy_((g_ND.narrow(0, after, N - after) * home_ND.narrow(0, after, N - after)).sum(1));
    auto dy = comm->all_to_all(d_home_ND, send_rows, recv_rows);
    const auto w_dtype = static_cast<torch::ScalarType>(ctx->saved_data["w_dtype"].toInt());
    return {dy, dw.to(w_dtype), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

Dispatched AllToAllTokenDispatcher::dispatch(const torch::Tensor& x_TD, const RouterOutput& routing,
                                             int64_t capacity_group) {
  auto out = dispatch_async(x_TD, routing, capacity_group);
  out.wait();
  return out;
}

Dispatched AllToAllTokenDispatcher::dispatch_async(const torch::Tensor& x_TD,
                                                   const RouterOutput& routing,
                                                   int64_t capacity_group) {
  const int ep = ep_group_.size();
  const int64_t local = num_local_experts();
  Dispatched out;
  out.plan = plan_routing(options_, routing, x_TD.size(0), capacity_group);

  // Who sends how many rows for which expert: [ep (destination), local
  // experts] out, [ep (source), local experts] in. From the host counts over
  // the host backend (no device sync), exchanged while the tokens are permuted.
  const std::vector<int64_t> ones(ep, 1);
  auto counts_sent = torch::tensor(out.plan.counts, torch::kLong).view({ep, local});
  auto counts_recv = torch::empty({ep, local}, torch::kLong);
  auto counts_op =
      ep_group_.all_to_all_async(counts_sent, ones, ones, counts_recv, SelfRows::kCopy);
  out.send_rows.assign(ep, 0);
  for (int p = 0; p < ep; ++p) {
    for (int64_t e = 0; e < local; ++e) out.send_rows[p] += out.plan.counts[p * local + e];
  }
  const int64_t* c = counts_recv.data_ptr<int64_t>();
  if (x_TD.device().is_cpu()) {
    Exchange ex;
    ex.comm = &ep_group_;
    ex.send_rows = out.send_rows;
    ex.buffer = &recv_buffer_;
    ex.arriving = &out.arriving;
    ex.counts = counts_op.get();
    ex.counts_recv = c;
    ex.local = local;
    out.tokens_ND = PermuteExchangeFn::apply(x_TD, out.plan.source_token_N, &ex, &send_buffer_);
    out.recv_rows = ex.recv_rows;
  } else {
    // CUDA: the fused permutation where it applies; the exchange on NCCL's stream.
    auto permuted_ND = permute_tokens(x_TD, out.plan);
    counts_op->wait();
    out.recv_rows.assign(ep, 0);
    for (int p = 0; p < ep; ++p) {
      for (int64_t e = 0; e < local; ++e) out.recv_rows[p] += c[p * local + e];
    }
    out.tokens_ND = differentiable_all_to_all_async(ep_group_, permuted_ND, out.send_rows,
                                                    out.recv_rows, &recv_buffer_, &out.arriving);
  }
  // Rows arrive grouped by source rank, then local expert.
  out.segment_rows.assign(c, c + ep * local);
  for (int p = 0; p < ep; ++p) {
    for (int64_t e = 0; e < local; ++e) out.segment_experts.push_back(e);
  }
  return out;
}

torch::Tensor AllToAllTokenDispatcher::combine(const torch::Tensor& expert_out_ND,
                                               const Dispatched& dispatched) {
  if (expert_out_ND.device().is_cpu()) {
    Exchange ex;
    ex.comm = &ep_group_;
    ex.send_rows = dispatched.send_rows;
    ex.recv_rows = dispatched.recv_rows;
    ex.buffer = &home_buffer_;
    return ExchangeUnpermuteFn::apply(expert_out_ND, dispatched.plan.weight_N,
                                      dispatched.plan.source_token_N, dispatched.plan.num_tokens,
                                      &ex);
  }
  auto home = differentiable_all_to_all(ep_group_, expert_out_ND, dispatched.recv_rows,
                                        dispatched.send_rows, &home_buffer_);
  return unpermute_tokens(home, dispatched.plan);
}

std::shared_ptr<TokenDispatcher> make_dispatcher(const MoEOptions& options,
                                                 Communicator* ep_group) {
  if (ep_group && ep_group->size() > 1)
    return std::make_shared<AllToAllTokenDispatcher>(options, *ep_group);
  return std::make_shared<LocalTokenDispatcher>(options);
}

}  // namespace moxie
