// Transformer blocks and the causal LM.
#include "core/model/transformer.h"

#include <map>
#include <stdexcept>

#include "parallel/differentiable.h"

namespace moxie {

bool is_moe_layer(const ModelOptions& options, int64_t layer) {
  if (layer < options.first_k_dense) return false;
  return (layer - options.first_k_dense) % options.moe_every == 0;
}

BlockImpl::BlockImpl(const ModelOptions& model, const MoEOptions& moe, bool moe_layer,
                     const ModelParallel& parallel) {
  self_attn = register_module("self_attn", Attention(model, parallel.tp));
  if (moe_layer) {
    block_sparse_moe =
        register_module("block_sparse_moe", MoELayer(model.d_model, moe, parallel, model.init_std));
  } else {
    mlp = register_module("mlp",
                          SwiGLU(model.d_model, model.ffn_hidden, model.init_std, parallel.tp));
  }
  input_layernorm = register_module("input_layernorm", RMSNorm(model.d_model, model.norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(model.d_model, model.norm_eps));
}

BlockOutput BlockImpl::forward(const torch::Tensor& x, const torch::Tensor& attn_mask,
                               KVCacheLayer* cache) {
  BlockOutput out;
  auto h = x + (cache ? self_attn->forward_cached(input_layernorm(x), *cache)
                      : self_attn(input_layernorm(x), attn_mask));
  auto normed = post_attention_layernorm(h);
  if (block_sparse_moe) {
    auto moe = block_sparse_moe(normed);
    out.x = h + moe.y;
    out.aux_loss = moe.aux_loss;
    out.stats = moe.stats;
  } else {
    out.x = h + mlp(normed);
  }
  return out;
}

DecoderImpl::DecoderImpl(const ModelOptions& model, const MoEOptions& moe,
                         const ModelParallel& parallel) {
  embed_tokens = register_module(
      "embed_tokens",
      VocabParallelEmbedding(model.vocab_size, model.d_model, parallel.tp, model.init_std));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < model.n_layers; ++i) {
    layers->push_back(Block(model, moe, is_moe_layer(model, i), parallel));
  }
  norm = register_module("norm", RMSNorm(model.d_model, model.norm_eps));
}

CausalLMImpl::CausalLMImpl(const ModelOptions& model_opts, const MoEOptions& moe_opts,
                           const ModelParallel& parallel)
    : model_options_(model_opts), moe_options_(moe_opts), tp_(parallel.tp) {
  model = register_module("model", Decoder(model_opts, moe_opts, parallel));
  // Tied: the head reuses the embedding, and no "lm_head.weight" exists (HF's
  // tied layout). Both split the vocabulary the same way.
  if (!model_opts.tie_embeddings) {
    lm_head = register_module("lm_head", ParallelLinear(model_opts.d_model, model_opts.vocab_size,
                                                        Split::kColumn, tp_, model_opts.init_std));
  }
  if (model_opts.image_patch_dim > 0) {
    image_encoder = register_module(
        "image_encoder", ImageEncoder(model_opts.image_patch_dim, model_opts.image_patches,
                                      model_opts.d_model, model_opts.init_std));
  }
  if (model_opts.audio_frame > 0) {
    audio_encoder = register_module(
        "audio_encoder",
        AudioEncoder(model_opts.audio_frame, model_opts.d_model, model_opts.init_std));
  }
}

torch::Tensor document_mask(const torch::Tensor& doc) {
  const int64_t S = doc.size(1);
  auto same = doc.unsqueeze(2).eq(doc.unsqueeze(1));
  auto causal =
      torch::ones({S, S}, torch::TensorOptions().dtype(torch::kBool).device(doc.device())).tril();
  return (same & causal).unsqueeze(1);
}

ModelOutput CausalLMImpl::forward(const torch::Tensor& tokens) {
  ModelInputs inputs;
  inputs.tokens = tokens;
  return forward_inputs(inputs);
}

ModelOutput CausalLMImpl::forward_inputs(const ModelInputs& in) {
  ModelOutput out;
  auto x = model->embed_tokens(in.tokens);
  // Media replace the (padding) token embeddings at their positions. Under
  // TP the lookup is a partial sum over vocabulary shards: each rank puts
  // 1/tp of the encoder's output, and the reduce-scatter sums them.
  const bool has_images = image_encoder && in.patches.defined() && in.patches.size(0) > 0;
  const bool has_audio = audio_encoder && in.frames.defined() && in.frames.size(0) > 0;
  if (has_images || has_audio) {
    const auto shape = x.sizes().vec();
    x = x.reshape({-1, x.size(-1)});
    const double share = 1.0 / static_cast<double>(tp_.size());
    if (has_images) {
      x = x.index_put({in.patch_slot},
                      image_encoder(in.patches, in.patch_index).to(x.scalar_type()) * share);
    }
    if (has_audio) {
      x = x.index_put({in.frame_slot},
                      audio_encoder(in.frames, in.frame_index).to(x.scalar_type()) * share);
    }
    x = x.reshape(shape);
  }
  const auto mask = in.doc.defined() ? document_mask(in.doc) : torch::Tensor();
  // Sequence parallel: each TP rank continues with its slice of the summed lookup.
  if (tp_.on()) x = reduce_scatter_along(*tp_.group, x, 1);
  const auto loss_dtype = x.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  out.aux_loss = torch::zeros({}, x.options().dtype(loss_dtype));
  for (const auto& layer : *model->layers) {
    auto block = layer->as<BlockImpl>()->forward(x, mask);
    x = block.x;
    if (block.aux_loss.defined()) {
      out.aux_loss = out.aux_loss + block.aux_loss.to(out.aux_loss.scalar_type());
      out.moe_stats.push_back(block.stats);
    }
  }
  x = model->norm(x);
  if (tp_.on()) {
    x = all_gather_along(*tp_.group, x, 1);
    // Each TP rank's aux terms cover its slice of the tokens: its share of
    // the replica's (mean) aux loss is 1/tp of them.
    out.aux_loss = out.aux_loss / static_cast<double>(tp_.size());
  }
  out.logits = lm_head ? lm_head(x) : linear_product(x, model->embed_tokens->weight);
  return out;
}

torch::Tensor CausalLMImpl::forward_cached(const torch::Tensor& tokens,
                                           std::vector<KVCacheLayer>& cache) {
  TORCH_CHECK(!tp_.on(), "a KV cache needs the whole model on one rank (parallel.tp=1)");
  cache.resize(model->layers->size());
  auto x = model->embed_tokens(tokens);
  for (size_t l = 0; l < model->layers->size(); ++l) {
    x = model->layers[l]->as<BlockImpl>()->forward(x, {}, &cache[l]).x;
  }
  x = model->norm(x);
  return lm_head ? lm_head(x) : linear_product(x, model->embed_tokens->weight);
}

torch::Tensor CausalLMImpl::cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                          const torch::Tensor& loss_mask) const {
  if (!tp_.on()) return masked_cross_entropy(logits, targets, loss_mask);
  auto per_token =
      vocab_parallel_cross_entropy(*tp_.group, logits.reshape({-1, logits.size(-1)}),
                                   targets.reshape({-1}), model->embed_tokens->vocab_start());
  auto mask = loss_mask.reshape({-1}).to(per_token.scalar_type());
  return (per_token * mask).sum() / mask.sum().clamp_min(1.0);
}

void BlockImpl::describe(const std::string& prefix, std::vector<ParamSpec>& out) const {
  self_attn->describe(prefix + "self_attn.", out);
  if (block_sparse_moe) block_sparse_moe->describe(prefix + "block_sparse_moe.", out);
  if (mlp) mlp->describe(prefix + "mlp.", out);
  input_layernorm->describe(prefix + "input_layernorm.", out);
  post_attention_layernorm->describe(prefix + "post_attention_layernorm.", out);
}

void DecoderImpl::describe(const std::string& prefix, std::vector<ParamSpec>& out) const {
  embed_tokens->describe(prefix + "embed_tokens.", out);
  size_t i = 0;
  for (const auto& layer : *layers)
    layer->as<BlockImpl>()->describe(prefix + "layers." + std::to_string(i++) + ".", out);
  norm->describe(prefix + "norm.", out);
}

std::vector<ParamSpec> CausalLMImpl::param_specs() const {
  std::vector<ParamSpec> described;
  model->describe("model.", described);
  if (lm_head) lm_head->describe("lm_head.", described);
  if (image_encoder) image_encoder->describe("image_encoder.", described);
  if (audio_encoder) audio_encoder->describe("audio_encoder.", described);
  std::map<std::string, size_t> at;
  for (size_t i = 0; i < described.size(); ++i) at[described[i].name] = i;
  std::vector<ParamSpec> out;
  const auto params = named_parameters();
  for (const auto& item : params) {
    const auto it = at.find(item.key());
    if (it == at.end())
      throw std::logic_error("parameter " + item.key() +
                             " has no ParamSpec: its layer must describe it");
    out.push_back(described[it->second]);
  }
  if (out.size() != described.size()) {
    throw std::logic_error("the model describes " + std::to_string(described.size()) +
                           " parameters but has " + std::to_string(out.size()));
  }
  return out;
}

std::vector<MoELayer> CausalLMImpl::moe_layers() const {
  std::vector<MoELayer> result;
  for (const auto& layer : *model->layers) {
    auto* block = layer->as<BlockImpl>();
    if (block->block_sparse_moe) result.push_back(block->block_sparse_moe);
  }
  return result;
}

}  // namespace moxie
