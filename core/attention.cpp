// Grouped-query attention.
#include "core/attention.h"

namespace moxie {

int64_t head_dim_of(const ModelOptions& options) {
  return options.head_dim > 0 ? options.head_dim : options.d_model / options.n_heads;
}

AttentionImpl::AttentionImpl(const ModelOptions& options)
    : n_heads_(options.n_heads), n_kv_heads_(options.n_kv_heads), head_dim_(head_dim_of(options)) {
  auto linear = [](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  q_proj = register_module("q_proj", linear(options.d_model, n_heads_ * head_dim_));
  k_proj = register_module("k_proj", linear(options.d_model, n_kv_heads_ * head_dim_));
  v_proj = register_module("v_proj", linear(options.d_model, n_kv_heads_ * head_dim_));
  o_proj = register_module("o_proj", linear(n_heads_ * head_dim_, options.d_model));
  // The cos/sin table is derived state, not a weight: not a registered module.
  rope_ = RotaryEmbedding(head_dim_, options.max_seq_len, options.rope_theta);
  torch::NoGradGuard no_grad;
  for (auto& p : parameters()) p.normal_(0.0, options.init_std);
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0);
  const int64_t S = x.size(1);
  auto q = q_proj(x).view({B, S, n_heads_, head_dim_}).transpose(1, 2);
  auto k = k_proj(x).view({B, S, n_kv_heads_, head_dim_}).transpose(1, 2);
  auto v = v_proj(x).view({B, S, n_kv_heads_, head_dim_}).transpose(1, 2);
  q = rope_(q);
  k = rope_(k);
  auto out = at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0,
                                              /*is_causal=*/true, /*scale=*/std::nullopt,
                                              /*enable_gqa=*/n_kv_heads_ != n_heads_);
  return o_proj(out.transpose(1, 2).reshape({B, S, n_heads_ * head_dim_}));
}

}  // namespace moxie
