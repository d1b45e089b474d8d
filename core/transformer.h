// The causal language model: token embedding, N transformer blocks (attention
// + dense or MoE FFN), final norm, LM head. Module and parameter names follow
// Hugging Face's Mixtral ("model.layers.3.self_attn.q_proj.weight"), except
// that experts are stacked per layer ("...block_sparse_moe.experts.w13");
// core/hf_interop maps between the two. Dense FFN layers use "mlp.gate_proj" etc.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "core/attention.h"
#include "core/layers.h"
#include "core/options.h"
#include "experts/experts.h"
#include "experts/moe_layer.h"
#include "experts/options.h"

namespace moxie {

// True when layer i has an MoE FFN (model.first_k_dense, model.moe_every).
bool is_moe_layer(const ModelOptions& options, int64_t layer);

struct BlockOutput {
  torch::Tensor x;
  torch::Tensor aux_loss;  // undefined for a dense layer
  MoEStats stats;          // empty tensors for a dense layer
};

class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const ModelOptions& model, const MoEOptions& moe, bool moe_layer,
            const MoEParallel& parallel = {});
  BlockOutput forward(const torch::Tensor& x);

  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  MoELayer block_sparse_moe{nullptr};  // exactly one of these two is set
  SwiGLU mlp{nullptr};
};
TORCH_MODULE(Block);

// "model": embed_tokens, layers, norm.
class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const ModelOptions& model, const MoEOptions& moe, const MoEParallel& parallel = {});
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(Decoder);

struct ModelOutput {
  torch::Tensor logits;                // [B, S, V]
  torch::Tensor aux_loss;              // scalar sum over MoE layers (weighted); 0 if none
  std::vector<MoEStats> moe_stats;     // one per MoE layer, in layer order
};

class CausalLMImpl : public torch::nn::Module {
 public:
  // parallel: how every MoE layer is spread over ranks (default: one process).
  CausalLMImpl(const ModelOptions& model, const MoEOptions& moe, const MoEParallel& parallel = {});
  // tokens: int64 [B, S]
  ModelOutput forward(const torch::Tensor& tokens);

  // MoE layers in order, e.g. for the aux-loss-free bias update.
  std::vector<MoELayer> moe_layers() const;

  const ModelOptions& model_options() const { return model_options_; }
  const MoEOptions& moe_options() const { return moe_options_; }

  Decoder model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when model.tie_embeddings

 private:
  ModelOptions model_options_;
  MoEOptions moe_options_;
};
TORCH_MODULE(CausalLM);

}  // namespace moxie
