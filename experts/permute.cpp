// Token permutation and capacity dropping.
#include "experts/permute.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "experts/fused.h"

namespace moxie {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The CPU path: float32 or float64 rows on the host, with combine weights of
// the same type (anything else takes ATen's index_select / index_add).
bool host_rows_apply(const torch::Tensor& rows, const torch::Tensor& weight = {}) {
  const auto t = rows.scalar_type();
  return rows.is_cpu() && (t == torch::kFloat || t == torch::kDouble) &&
         (!weight.defined() || (weight.is_cpu() && weight.scalar_type() == t));
}

constexpr int64_t kRowsPerTask = 64;  // at::parallel_for grain, in rows

// out[t] = sum_k w[pos[t, k]] * rows[pos[t, k]] over kept assignments (w
// undefined: 1); one pass per token, no scatter, so no zero-filled buffer and
// the same sum order on any thread count.
torch::Tensor gather_rows_by_token(const torch::Tensor& rows_ND, const torch::Tensor& pos_TK,
                                   const torch::Tensor& w_N) {
  const int64_t T = pos_TK.size(0), K = pos_TK.size(1), D = rows_ND.size(1);
  auto rows = rows_ND.contiguous();
  auto w = w_N.defined() ? w_N.contiguous() : w_N;
  auto out = torch::empty({T, D}, rows.options());
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "gather_rows_by_token", [&] {
    const scalar_t* y = rows.data_ptr<scalar_t>();
    const scalar_t* wp = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    const int64_t* pos = pos_TK.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, T, kRowsPerTask, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        scalar_t* dst = o + t * D;
        for (int64_t c = 0; c < D; ++c) dst[c] = 0;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t p = pos[t * K + k];
          if (p < 0) continue;
          const scalar_t a = wp ? wp[p] : scalar_t(1);
          const scalar_t* src = y + p * D;
          for (int64_t c = 0; c < D; ++c) dst[c] += a * src[c];
        }
      }
    });
  });
  return out;
}

// out[n] = w[n] * in[src[n]]; with dot_N, also dot[n] = <in[src[n]], with[n]>.
torch::Tensor scale_rows_from(const torch::Tensor& in_TD, const torch::Tensor& src_N,
                              const torch::Tensor& w_N, const torch::Tensor& with_ND,
                              torch::Tensor* dot_N) {
  const int64_t N = src_N.size(0), D = in_TD.size(1);
  auto in = in_TD.contiguous();
  auto w = w_N.contiguous();
  auto with = with_ND.contiguous();
  auto out = torch::empty({N, D}, in.options());
  *dot_N = torch::empty({N}, in.options());
  AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "scale_rows_from", [&] {
    const scalar_t* x = in.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const scalar_t* yp = with.data_ptr<scalar_t>();
    const int64_t* src = src_N.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    scalar_t* dot = dot_N->data_ptr<scalar_t>();
    at::parallel_for(0, N, kRowsPerTask, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        const scalar_t* g = x + src[n] * D;
        const scalar_t* y = yp + n * D;
        scalar_t* dst = o + n * D;
        const scalar_t a = wp[n];
        scalar_t acc = 0;
        for (int64_t c = 0; c < D; ++c) {
          dst[c] = a * g[c];
          acc += g[c] * y[c];
        }
        dot[n] = acc;
      }
    });
  });
  return out;
}

// [T, D] -> [N, D] by row copies; backward sums each token's rows by token.
struct HostPermuteFn : public torch::autograd::Function<HostPermuteFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x_TD, torch::Tensor src_N,
                               torch::Tensor pos_TK) {
    ctx->save_for_backward({pos_TK});
    return x_TD.index_select(0, src_N);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto pos_TK = ctx->get_saved_variables()[0];
    return {gather_rows_by_token(grads[0], pos_TK, {}), torch::Tensor(), torch::Tensor()};
  }
};

// The weighted combine in the unpermute: [N, D] -> [T, D]; differentiable in
// y and the weights.
struct HostUnpermuteFn : public torch::autograd::Function<HostUnpermuteFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor y_ND, torch::Tensor w_N,
                               torch::Tensor src_N, torch::Tensor pos_TK) {
    auto y = y_ND.contiguous();
    auto w = w_N.contiguous();
    ctx->save_for_backward({y, w, src_N, pos_TK});
    return gather_rows_by_token(y, pos_TK, w);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    torch::Tensor dw_N;
    auto dy_ND = scale_rows_from(grads[0], saved[2], saved[1], saved[0], &dw_N);
    return {dy_ND, dw_N, torch::Tensor(), torch::Tensor()};
  }
};

// Dropless plan on the host by one counting sort over expert ids: rows
// expert-major and, the pass being stable, in token order within an expert.
// Fills source_token_N, counts, tokens_per_expert_E, pos_TK; returns order_N.
torch::Tensor counting_sort_plan(const torch::Tensor& expert_idx_TK, int64_t num_experts,
                                 PermutePlan& plan) {
  const int64_t T = expert_idx_TK.size(0), K = expert_idx_TK.size(1), A = T * K;
  auto expert_A = expert_idx_TK.to(torch::kLong).contiguous().view({A});
  const int64_t* ex = expert_A.data_ptr<int64_t>();
  std::vector<int64_t> start(static_cast<size_t>(num_experts) + 1, 0);
  for (int64_t a = 0; a < A; ++a) {
    const int64_t e = ex[a];
    if (e < 0 || e >= num_experts) {
      throw std::invalid_argument("make_permute_plan: expert id " + std::to_string(e) +
                                  " outside [0, " + std::to_string(num_experts) +
                                  "): the router's top-k must index moe.num_experts experts");
    }
    ++start[static_cast<size_t>(e) + 1];
  }
  plan.counts.assign(start.begin() + 1, start.end());
  for (int64_t e = 0; e < num_experts; ++e) start[e + 1] += start[e];
  auto opts = torch::TensorOptions().dtype(torch::kLong);
  auto order_N = torch::empty({A}, opts);
  auto source_N = torch::empty({A}, opts);
  auto pos_A = torch::empty({A}, opts);
  int64_t* order = order_N.data_ptr<int64_t>();
  int64_t* source = source_N.data_ptr<int64_t>();
  int64_t* pos = pos_A.data_ptr<int64_t>();
  for (int64_t a = 0; a < A; ++a) {
    const int64_t n = start[static_cast<size_t>(ex[a])]++;
    order[n] = a;
    source[n] = a / K;
    pos[a] = n;
  }
  plan.source_token_N = source_N;
  plan.pos_TK = pos_A.view({T, K});
  plan.tokens_per_expert_E = torch::tensor(plan.counts, opts);
  return order_N;
}

}  // namespace

int64_t expert_capacity(double capacity_factor, int64_t num_tokens, int64_t top_k,
                        int64_t num_experts) {
  if (capacity_factor <= 0) return 0;
  return static_cast<int64_t>(
      std::ceil(capacity_factor * static_cast<double>(num_tokens * top_k) / num_experts));
}

PermutePlan make_permute_plan(const torch::Tensor& expert_idx_TK, const torch::Tensor& weight_TK,
                              int64_t num_experts, int64_t capacity, DropPolicy policy,
                              int64_t group_tokens) {
  const int64_t T = expert_idx_TK.size(0);
  const int64_t K = expert_idx_TK.size(1);
  PermutePlan plan;
  plan.num_tokens = T;

  if (capacity <= 0 && expert_idx_TK.is_cpu()) {
    torch::Tensor order_N;
    {
      torch::NoGradGuard no_grad;
      order_N = counting_sort_plan(expert_idx_TK, num_experts, plan);
    }
    plan.weight_N = weight_TK.flatten().index_select(0, order_N);
    return plan;
  }

  torch::Tensor order_N;  // indices into the flattened [T*K] assignments
  {
    torch::NoGradGuard no_grad;
    auto expert_A = expert_idx_TK.flatten();
    // Flattened index t*K + k grows with t, so stable sorts keep token order.
    if (capacity <= 0) {
      order_N = std::get<1>(expert_A.sort(true, 0, false));
    } else {
      const int64_t G = group_tokens > 0 ? group_tokens : std::max<int64_t>(T, 1);
      const int64_t n_groups = (T + G - 1) / G;
      auto group_A = torch::arange(T * K, expert_A.options()).div(K * G, "floor");
      auto key_A = group_A * num_experts + expert_A;  // one slot per (group, expert)
      torch::Tensor by_priority;
      if (policy == DropPolicy::kProbs) {
        by_priority = std::get<1>(weight_TK.detach().flatten().sort(true, 0, true));
      } else {
        by_priority = torch::arange(T * K, expert_A.options());
      }
      auto by_key = std::get<1>(key_A.index_select(0, by_priority).sort(true, 0, false));
      order_N = by_priority.index_select(0, by_key);
      auto sorted_key = key_A.index_select(0, order_N);
      auto counts = torch::bincount(sorted_key, {}, n_groups * num_experts);
      auto starts = counts.cumsum(0) - counts;
      auto rank_N =
          torch::arange(order_N.size(0), order_N.options()) - starts.index_select(0, sorted_key);
      auto keep = rank_N < capacity;
      plan.dropped = order_N.size(0) - keep.sum().item<int64_t>();
      // Survivors back into expert-major, token order.
      order_N = std::get<0>(order_N.masked_select(keep).sort(true, 0, false));
      order_N = order_N.index_select(
          0, std::get<1>(expert_A.index_select(0, order_N).sort(true, 0, false)));
    }
    plan.source_token_N = order_N.div(K, "floor");
    plan.tokens_per_expert_E = torch::bincount(expert_A.index_select(0, order_N), {}, num_experts);
    auto counts = plan.tokens_per_expert_E.to(torch::kCPU).contiguous();
    plan.counts.assign(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + num_experts);
  }
  plan.weight_N = weight_TK.flatten().index_select(0, order_N);
  if (fused_moe_applies(weight_TK) || weight_TK.is_cpu()) {
    torch::NoGradGuard no_grad;
    plan.pos_TK = torch::full({T * K}, -1, order_N.options());
    plan.pos_TK.index_put_({order_N}, torch::arange(order_N.size(0), order_N.options()));
    plan.pos_TK = plan.pos_TK.view({T, K});
  }
  return plan;
}

torch::Tensor permute_tokens(const torch::Tensor& x_TD, const PermutePlan& plan) {
  if (plan.pos_TK.defined() && fused_moe_applies(x_TD))
    return fused_permute(x_TD, plan.source_token_N, plan.pos_TK);
  if (plan.pos_TK.defined() && host_rows_apply(x_TD))
    return HostPermuteFn::apply(x_TD, plan.source_token_N, plan.pos_TK);
  return x_TD.index_select(0, plan.source_token_N);
}

torch::Tensor unpermute_tokens(const torch::Tensor& y_ND, const PermutePlan& plan) {
  if (plan.pos_TK.defined() && fused_moe_applies(y_ND)) {
    return fused_unpermute(y_ND, plan.weight_N, plan.source_token_N, plan.pos_TK);
  }
  if (plan.pos_TK.defined() && host_rows_apply(y_ND, plan.weight_N))
    return HostUnpermuteFn::apply(y_ND, plan.weight_N, plan.source_token_N, plan.pos_TK);
  auto weighted_ND = y_ND * plan.weight_N.to(y_ND.scalar_type()).unsqueeze(1);
  return torch::zeros({plan.num_tokens, y_ND.size(1)}, y_ND.options())
      .index_add(0, plan.source_token_N, weighted_ND);
}

}  // namespace moxie
