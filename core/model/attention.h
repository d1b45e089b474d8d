// Causal grouped-query self-attention with rotary embeddings (Mixtral layout:
// q_proj, k_proj, v_proj, o_proj, no biases), on LibTorch's
// scaled_dot_product_attention. Under tensor parallelism the heads are split:
// q/k/v are column-parallel (n_heads/tp query and n_kv_heads/tp key-value
// heads per rank, contiguous, so each query head's key-value head is local),
// o_proj is row-parallel; the input and output are sequence slices.
#pragma once

#include <torch/torch.h>

#include "core/model/layers.h"
#include "core/model/options.h"
#include "parallel/tensor_parallel.h"

namespace moxie {

// The keys and values of the positions seen so far, for generation: [B,
// n_kv_heads, T, head_dim] each, undefined before the first token.
struct KVCacheLayer {
  torch::Tensor k, v;
  int64_t length() const { return k.defined() ? k.size(2) : 0; }
};

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelOptions& options, const TensorParallel& tp = {});
  // x: [B, S/tp, D] (this rank's slice of the sequence) -> [B, S/tp, D]
  // attn_mask: bool [B, 1, S, S] over the whole sequence, or undefined: causal.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& attn_mask = {});
  // Generation (no TP, causal): x holds the S positions after the cache's T;
  // they attend to all T + S keys, which the cache then holds.
  torch::Tensor forward_cached(const torch::Tensor& x, KVCacheLayer& cache);

  ParallelLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  // Appends what this layer says of each of its parameters (named prefix + name).
  void describe(const std::string& prefix, std::vector<ParamSpec>& out) const;

 private:
  TensorParallel tp_;
  int64_t n_heads_, n_kv_heads_, head_dim_;  // this rank's heads
  RotaryEmbedding rope_{nullptr};
};
TORCH_MODULE(Attention);

int64_t head_dim_of(const ModelOptions& options);

}  // namespace moxie
