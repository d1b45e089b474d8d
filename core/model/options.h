// Options of the model: its shape and its adapters. Plain structs, no torch:
// core/config/config.cpp reads them from YAML, and validation lives there too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moxie {

// Decoder-only transformer with the Mixtral architecture.
struct ModelOptions {
  int64_t vocab_size = 259;  // byte tokenizer: 256 bytes + BOS, EOS, PAD
  int64_t d_model = 128;
  int64_t n_layers = 4;
  int64_t n_heads = 4;
  int64_t n_kv_heads = 2;    // grouped-query attention; divides n_heads
  int64_t head_dim = 0;      // 0: d_model / n_heads
  int64_t ffn_hidden = 512;  // width of the dense SwiGLU FFN
  int64_t max_seq_len = 4096;
  double rope_theta = 1e6;
  double norm_eps = 1e-5;
  double init_std = 0.02;
  bool tie_embeddings = false;
  bool qkv_bias = false;      // biases on the q, k and v projections (Qwen2-MoE)
  int64_t first_k_dense = 0;  // layers [0, first_k_dense) use a dense FFN
  int64_t moe_every = 1;  // after those, layer i is MoE iff (i - first_k_dense) % moe_every == 0
  // Modality encoders, set by the trainer from the dataset (not from YAML):
  // 0 leaves the encoder out.
  int64_t image_patch_dim = 0;  // pixels per patch (patch x patch x channels)
  int64_t image_patches = 0;    // patches per image
  int64_t audio_frame = 0;      // samples per audio frame
};

// Low-rank adapters (LoRA): every targeted weight W becomes W + alpha/rank * B A
// with B starting at zero; every other parameter is frozen (no gradient, no
// optimizer state), adapters are split like the weights they adapt.
struct LoraOptions {
  int64_t rank = 0;  // 0: no adapters
  double alpha = 16;
  double dropout = 0;  // on the adapters' input in linear layers (not the router or experts)
  // Targets: a linear layer's name (q_proj, k_proj, v_proj, o_proj,
  // gate_proj, up_proj, down_proj, lm_head) or any part of its path (e.g.
  // self_attn, shared_expert); "router"; "experts" (w13 and w2 of every
  // routed expert), "experts.w13", "experts.w2".
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj"};
};

}  // namespace moxie
