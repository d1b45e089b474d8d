// Causal grouped-query self-attention with rotary embeddings (Mixtral layout:
// q_proj, k_proj, v_proj, o_proj, no biases), on LibTorch's
// scaled_dot_product_attention.
#pragma once

#include <torch/torch.h>

#include "core/layers.h"
#include "core/options.h"

namespace moxie {

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelOptions& options);
  // x: [B, S, D] -> [B, S, D]
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t n_heads_, n_kv_heads_, head_dim_;
  RotaryEmbedding rope_{nullptr};
};
TORCH_MODULE(Attention);

int64_t head_dim_of(const ModelOptions& options);

}  // namespace moxie
