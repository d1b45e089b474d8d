// Options of the model and of the training loop. Plain structs, no torch:
// core/config.cpp reads them from YAML, core/config_validate.cpp checks them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moxie {

// Each choice's names, in the enum's order, are the values its config key
// takes (core/config.cpp reads them, core/config_to_yaml.cpp writes them).

// train.device: the CPU, or one GPU per rank (device = the rank's local rank).
enum class DeviceKind { kCpu, kCuda };
constexpr std::array<const char*, 2> enum_names(DeviceKind) { return {"cpu", "cuda"}; }
inline const char* to_string(DeviceKind v) { return enum_names(v)[static_cast<size_t>(v)]; }

// train.dtype: of parameters and compute; master weights stay float32.
enum class TrainDtype { kFloat32, kBFloat16 };
constexpr std::array<const char*, 2> enum_names(TrainDtype) { return {"float32", "bfloat16"}; }
inline const char* to_string(TrainDtype v) { return enum_names(v)[static_cast<size_t>(v)]; }

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
  // After those, layer i is MoE iff (i - first_k_dense) % moe_every == 0.
  int64_t moe_every = 1;
  // Modality encoders, set by the trainer from the dataset (not from YAML):
  // 0 leaves the encoder out.
  int64_t image_patch_dim = 0;  // pixels per patch (patch x patch x channels)
  int64_t image_patches = 0;    // patches per image
  int64_t audio_frame = 0;      // samples per audio frame
};

struct TrainOptions {
  int64_t steps = 1000;
  int64_t micro_batch_size = 16;  // sequences per micro-batch
  int64_t grad_accum = 1;         // micro-batches per optimizer step
  int64_t eval_every = 100;       // 0: only at the end
  int64_t eval_batches = 8;
  int64_t log_every = 10;
  int64_t seed = 1234;
  std::string run_dir = "runs/tiny";
  DeviceKind device = DeviceKind::kCpu;
  TrainDtype dtype = TrainDtype::kFloat32;
  int64_t threads = 0;  // intra-op threads; 0: all cores
  // Checkpoints in run_dir/checkpoints (core/checkpoint.h): every N steps,
  // at the end and on SIGTERM/SIGINT; 0: none.
  int64_t checkpoint_every = 0;
  int64_t keep_checkpoints = 3;  // committed checkpoints kept
  int64_t stop_at = 0;           // save and stop after this step (a job's time slot); 0: never
  // auto: from the run folder's latest committed checkpoint if there is one;
  // latest: that, required; none: start fresh; or a checkpoint folder.
  std::string resume = "auto";
  // A step whose loss or gradient is NaN or Inf is skipped (no update,
  // counted and logged); this many such steps in a row stop the run.
  int64_t max_nonfinite_steps = 5;
};

// Fine-tuning from a pretrained checkpoint (configs/recipes/).
struct FinetuneOptions {
  // A committed checkpoint folder (moxie's own, or what `moxie import --hf`
  // made): its weights start the run (optimizer fresh, step 0, any layout),
  // and its run's config.yaml gives the model and moe sections. "": none.
  std::string base;
  // Parameters kept at their starting values: "router" (every MoE gate),
  // "experts" (the routed experts), or any part of a parameter's name.
  std::vector<std::string> freeze;
  double router_lr = 1.0;  // the routers' learning rate, as a multiple of the schedule's
  // Stop after this many evaluations without a lower eval loss; 0: never.
  int64_t early_stop_patience = 0;
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
