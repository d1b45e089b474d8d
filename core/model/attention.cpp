// Grouped-query attention.
#include "core/model/attention.h"

#include "parallel/differentiable.h"

namespace moxie {

int64_t head_dim_of(const ModelOptions& options) {
  return options.head_dim > 0 ? options.head_dim : options.d_model / options.n_heads;
}

AttentionImpl::AttentionImpl(const ModelOptions& options, const TensorParallel& tp)
    : tp_(tp),
      n_heads_(options.n_heads / tp.size()),
      n_kv_heads_(options.n_kv_heads / tp.size()),
      head_dim_(head_dim_of(options)) {
  const int64_t d = options.d_model, hd = head_dim_;
  auto column = [&](int64_t heads) {
    return ParallelLinear(d, heads * hd, Split::kColumn, tp, options.init_std, options.qkv_bias);
  };
  q_proj = register_module("q_proj", column(options.n_heads));
  k_proj = register_module("k_proj", column(options.n_kv_heads));
  v_proj = register_module("v_proj", column(options.n_kv_heads));
  o_proj = register_module(
      "o_proj", ParallelLinear(options.n_heads * hd, d, Split::kRow, tp, options.init_std));
  // The cos/sin table is derived state, not a weight: not a registered module.
  rope_ = RotaryEmbedding(head_dim_, options.max_seq_len, options.rope_theta);
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x_slice, const torch::Tensor& attn_mask) {
  // Column-parallel in: the whole sequence; row-parallel out: partial sums,
  // reduce-scattered back to this rank's slice.
  const auto x = tp_.on() ? all_gather_along(*tp_.group, x_slice, 1) : x_slice;
  const int64_t B = x.size(0);
  const int64_t S = x.size(1);
  auto q = q_proj(x).view({B, S, n_heads_, head_dim_}).transpose(1, 2);
  auto k = k_proj(x).view({B, S, n_kv_heads_, head_dim_}).transpose(1, 2);
  auto v = v_proj(x).view({B, S, n_kv_heads_, head_dim_}).transpose(1, 2);
  q = rope_(q);
  k = rope_(k);
  const bool causal = !attn_mask.defined();
  const auto mask = causal ? std::nullopt : std::optional<at::Tensor>(attn_mask);
  auto out = at::scaled_dot_product_attention(q, k, v, mask, /*dropout_p=*/0.0,
                                              /*is_causal=*/causal, /*scale=*/std::nullopt,
                                              /*enable_gqa=*/n_kv_heads_ != n_heads_);
  auto y = o_proj(out.transpose(1, 2).reshape({B, S, n_heads_ * head_dim_}));
  return tp_.on() ? reduce_scatter_along(*tp_.group, y, 1) : y;
}

torch::Tensor AttentionImpl::forward_cached(const torch::Tensor& x, KVCacheLayer& cache) {
  TORCH_CHECK(!tp_.on(), "a KV cache needs the whole model on one rank (parallel.tp=1)");
  const int64_t B = x.size(0);
  const int64_t S = x.size(1);
  const int64_t T = cache.length();
  auto q = q_proj(x).view({B, S, n_heads_, head_dim_}).transpose(1, 2);
  auto k = k_proj(x).view({B, S, n_kv_heads_, head_dim_}).transpose(1, 2);
  auto v = v_proj(x).view({B, S, n_kv_heads_, head_dim_}).transpose(1, 2);
  q = rope_(q, T);
  k = rope_(k, T);
  cache.k = T > 0 ? torch::cat({cache.k, k}, 2) : k;
  cache.v = T > 0 ? torch::cat({cache.v, v}, 2) : v;
  // New position i (absolute T + i) sees keys 0..T + i.
  std::optional<at::Tensor> mask;
  if (T > 0 && S > 1) {
    auto opts = torch::TensorOptions().dtype(torch::kLong).device(x.device());
    mask = torch::arange(T + S, opts).unsqueeze(0) <= (torch::arange(S, opts) + T).unsqueeze(1);
  }
  auto out = at::scaled_dot_product_attention(q, cache.k, cache.v, mask, /*dropout_p=*/0.0,
                                              /*is_causal=*/T == 0 && S > 1, /*scale=*/std::nullopt,
                                              /*enable_gqa=*/n_kv_heads_ != n_heads_);
  return o_proj(out.transpose(1, 2).reshape({B, S, n_heads_ * head_dim_}));
}

void AttentionImpl::describe(const std::string& prefix, std::vector<ParamSpec>& out) const {
  q_proj->describe(prefix + "q_proj.", out);
  k_proj->describe(prefix + "k_proj.", out);
  v_proj->describe(prefix + "v_proj.", out);
  o_proj->describe(prefix + "o_proj.", out);
}

}  // namespace moxie
