// The causal language model: token embedding, N transformer blocks (attention
// + dense or MoE FFN), final norm, LM head. Module and parameter names follow
// Hugging Face's Mixtral ("model.layers.3.self_attn.q_proj.weight"), except
// that experts are stacked per layer ("...block_sparse_moe.experts.w13");
// core/checkpoint/hf_interop maps between the two. Dense FFN layers use "mlp.gate_proj" etc.
#pragma once

#include <torch/torch.h>

#include <set>
#include <string>
#include <vector>

#include "core/model/attention.h"
#include "core/model/layers.h"
#include "core/model/options.h"
#include "experts/experts.h"
#include "experts/moe_layer.h"
#include "experts/options.h"
#include "experts/swiglu.h"
#include "parallel/parallelize.h"
#include "parallel/tensor_parallel.h"

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
            const ModelParallel& parallel = {});
  // attn_mask: bool [B, 1, S, S] (true: may attend), or undefined: causal.
  BlockOutput forward(const torch::Tensor& x, const torch::Tensor& attn_mask = {},
                      KVCacheLayer* cache = nullptr);

  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  MoELayer block_sparse_moe{nullptr};  // exactly one of these two is set
  SwiGLU mlp{nullptr};
  void describe(const std::string& prefix, std::vector<ParamSpec>& out) const;
};
TORCH_MODULE(Block);

// "model": embed_tokens, layers, norm.
class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const ModelOptions& model, const MoEOptions& moe, const ModelParallel& parallel = {});
  VocabParallelEmbedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
  void describe(const std::string& prefix, std::vector<ParamSpec>& out) const;
};
TORCH_MODULE(Decoder);

// What a packed, possibly multimodal batch gives the model beside its tokens.
struct ModelInputs {
  torch::Tensor tokens;  // int64 [B, S], the same on every TP rank
  torch::Tensor doc;     // int64 [B, S]: attention stays within a document; undefined: causal only
  // Image patches / audio frames and the flat input positions (into B * S)
  // whose embedding they replace; index: the patch's (frame's) number in its image (clip).
  torch::Tensor patches, patch_slot, patch_index;
  torch::Tensor frames, frame_slot, frame_index;
};

// Causal and within-document: [B, 1, S, S] bool from doc ids [B, S].
torch::Tensor document_mask(const torch::Tensor& doc);

struct ModelOutput {
  torch::Tensor logits;  // [B, S, V/tp]: this rank's vocabulary shard
  // Scalar sum over MoE layers (weighted); 0 if none. Under tensor
  // parallelism, this rank's share: summed over the TP group it is the aux loss.
  torch::Tensor aux_loss;
  std::vector<MoEStats> moe_stats;  // one per MoE layer, in layer order
};

class CausalLMImpl : public torch::nn::Module {
 public:
  // parallel: how the model is spread over ranks (parallelize(), default:
  // one process): experts over parallel.ep; with parallel.tp, attention
  // heads, FFN widths and the vocabulary split over TP, and the sequence split
  // between blocks (sequence parallelism).
  CausalLMImpl(const ModelOptions& model, const MoEOptions& moe,
               const ModelParallel& parallel = {});
  // tokens: int64 [B, S], the same on every TP rank.
  ModelOutput forward(const torch::Tensor& tokens);
  ModelOutput forward_inputs(const ModelInputs& inputs);  // packed, multimodal batches
  // Generation: the logits [B, S, V] of the S tokens that follow the cache's
  // positions, which it then holds too (one process, text only).
  torch::Tensor forward_cached(const torch::Tensor& tokens, std::vector<KVCacheLayer>& cache);

  // Mean cross-entropy of forward()'s logits over positions where loss_mask is
  // 1 (vocabulary-parallel under TP; the same value on every TP rank).
  torch::Tensor cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                              const torch::Tensor& loss_mask) const;

  // What the model's layers say of each parameter (the TP split axis,
  // expert, router, embedding, adapter), in named_parameters() order; the
  // input of make_param_layouts (parallel/param_layout.h). Throws
  // std::logic_error if a layer leaves a parameter undescribed.
  std::vector<ParamSpec> param_specs() const;

  // Low-rank adapters on the layers lora.targets names (see LoraOptions);
  // returns how many weights got one. Throws naming a target that matches
  // nothing in this model.
  int64_t add_lora(const LoraOptions& lora);
  // Folds every adapter into its weight (the adapters then add nothing).
  void merge_lora();
  const TensorParallel& tensor_parallel() const { return tp_; }

  // MoE layers in order, e.g. for the aux-loss-free bias update.
  std::vector<MoELayer> moe_layers() const;

  const ModelOptions& model_options() const { return model_options_; }
  const MoEOptions& moe_options() const { return moe_options_; }

  Decoder model{nullptr};
  ParallelLinear lm_head{nullptr};      // null when model.tie_embeddings
  ImageEncoder image_encoder{nullptr};  // null unless model.image_patch_dim
  AudioEncoder audio_encoder{nullptr};  // null unless model.audio_frame

 private:
  ModelOptions model_options_;
  MoEOptions moe_options_;
  TensorParallel tp_;
};
TORCH_MODULE(CausalLM);

}  // namespace moxie
