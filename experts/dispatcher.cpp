// Token dispatchers: local, and all-to-all over the EP group.
#include "experts/dispatcher.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "experts/fused.h"

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

// [T, D] -> [N, D] into `out`: row n is x[src[n]]. Backward is index_select's
// (each token sums its rows' gradients, in row order).
struct PermuteIntoFn : public torch::autograd::Function<PermuteIntoFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor src_N,
                               ReusableBuffer* out) {
    auto x_TD = x.contiguous();
    const int64_t N = src_N.size(0), D = x_TD.size(1);
    auto rows_ND = out->get({N, D}, x_TD.options());
    if (x_TD.device().is_cpu()) {
      auto src = src_N.to(torch::kCPU).contiguous();
      const int64_t* s = src.data_ptr<int64_t>();
      const size_t row_bytes = static_cast<size_t>(D) * x_TD.element_size();
      const auto* from = static_cast<const char*>(x_TD.data_ptr());
      auto* to = static_cast<char*>(rows_ND.data_ptr());
      for (int64_t n = 0; n < N; ++n)
        std::memcpy(to + n * row_bytes, from + s[n] * row_bytes, row_bytes);
    } else {
      torch::index_select_out(rows_ND, x_TD, 0, src_N);
    }
    ctx->save_for_backward({src_N});
    ctx->saved_data["T"] = x_TD.size(0);
    return rows_ND;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto src_N = ctx->get_saved_variables()[0];
    const auto& g = grads[0];
    auto dx = torch::zeros({ctx->saved_data["T"].toInt(), g.size(1)}, g.options())
                  .index_add_(0, src_N, g);
    return {dx, torch::Tensor(), torch::Tensor()};
  }
};

// out[t] = sum over token t's rows n, in increasing n, of w[n] * y[n]: the
// additions of unpermute_tokens' index_add in its order, in one pass over y.
template <typename T>
void weighted_sum_rows(const T* y, const T* w, const int64_t* src, int64_t N, int64_t D,
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
      const T* r = y + rows[j] * D;
      const T wj = w[rows[j]];
      for (int64_t d = 0; d < D; ++d) o[d] += wj * r[d];
    }
  }
}

// [N, D] -> [T, D]: unpermute_tokens reading the receive buffer where it lies
// (one pass on CPU float32/float64). Backward: unpermute_tokens' own.
struct WeightedUnpermuteFn : public torch::autograd::Function<WeightedUnpermuteFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor y, torch::Tensor weight_N,
                               torch::Tensor src_N, int64_t num_tokens) {
    auto y_ND = y.contiguous();
    auto w_N = weight_N.to(y_ND.scalar_type()).contiguous();
    ctx->save_for_backward({y_ND, w_N, src_N});
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(weight_N.scalar_type());
    const int64_t N = y_ND.size(0), D = y_ND.size(1);
    const auto type = y_ND.scalar_type();
    if (y_ND.device().is_cpu() && (type == torch::kFloat || type == torch::kDouble)) {
      auto out = torch::empty({num_tokens, D}, y_ND.options());
      auto src = src_N.contiguous();
      AT_DISPATCH_FLOATING_TYPES(type, "weighted_unpermute", [&] {
        weighted_sum_rows(y_ND.data_ptr<scalar_t>(), w_N.data_ptr<scalar_t>(),
                          src.data_ptr<int64_t>(), N, D, num_tokens, out.data_ptr<scalar_t>());
      });
      return out;
    }
    return torch::zeros({num_tokens, D}, y_ND.options())
        .index_add_(0, src_N, y_ND * w_N.unsqueeze(1));
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &y_ND = saved[0], &w_N = saved[1], &src_N = saved[2];
    auto g_ND = grads[0].index_select(0, src_N);
    auto dy = g_ND * w_N.unsqueeze(1);
    const auto w_dtype = static_cast<torch::ScalarType>(ctx->saved_data["w_dtype"].toInt());
    auto dw = (g_ND * y_ND).sum(1).to(w_dtype);
    return {dy, dw, torch::Tensor(), torch::Tensor()};
  }
};

// The fused CUDA permutation (experts/fused.h) when it applies; else ours.
bool fused_applies(const PermutePlan& plan, const torch::Tensor& t) {
  return plan.pos_TK.defined() && fused_moe_applies(t);
}

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
  auto counts_op = ep_group_.all_to_all_async(counts_sent, ones, ones, counts_recv);
  auto permuted_ND = fused_applies(out.plan, x_TD)
                         ? permute_tokens(x_TD, out.plan)
                         : PermuteIntoFn::apply(x_TD, out.plan.source_token_N, &send_buffer_);
  counts_op->wait();

  const int64_t* c = counts_recv.data_ptr<int64_t>();
  out.send_rows.assign(ep, 0);
  out.recv_rows.assign(ep, 0);
  for (int p = 0; p < ep; ++p) {
    for (int64_t e = 0; e < local; ++e) {
      out.send_rows[p] += out.plan.counts[p * local + e];
      out.recv_rows[p] += c[p * local + e];
    }
  }
  out.tokens_ND = differentiable_all_to_all_async(ep_group_, permuted_ND, out.send_rows,
                                                  out.recv_rows, &recv_buffer_, &out.arriving);
  // Rows arrive grouped by source rank, then local expert.
  out.segment_rows.assign(c, c + ep * local);
  for (int p = 0; p < ep; ++p) {
    for (int64_t e = 0; e < local; ++e) out.segment_experts.push_back(e);
  }
  return out;
}

torch::Tensor AllToAllTokenDispatcher::combine(const torch::Tensor& expert_out_ND,
                                               const Dispatched& dispatched) {
  // Send rows home the way they came, then unpermute from where they landed.
  auto home = differentiable_all_to_all(ep_group_, expert_out_ND, dispatched.recv_rows,
                                        dispatched.send_rows, &home_buffer_);
  if (fused_applies(dispatched.plan, home)) return unpermute_tokens(home, dispatched.plan);
  return WeightedUnpermuteFn::apply(home, dispatched.plan.weight_N, dispatched.plan.source_token_N,
                                    dispatched.plan.num_tokens);
}

std::shared_ptr<TokenDispatcher> make_dispatcher(const MoEOptions& options,
                                                 Communicator* ep_group) {
  if (ep_group && ep_group->size() > 1)
    return std::make_shared<AllToAllTokenDispatcher>(options, *ep_group);
  return std::make_shared<LocalTokenDispatcher>(options);
}

}  // namespace moxie
