// Small model pieces: RMSNorm, rotary position embeddings, the masked loss,
// the modality encoders.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "parallel/param_layout.h"

namespace moxie {

// x * rsqrt(mean(x^2) + eps) * weight, normalised in float32 (float64 stays
// float64), as Hugging Face's Mixtral does. Parameter "weight" [D].
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  // Appends what this layer says of each of its parameters (named prefix + name).
  void describe(const std::string& prefix, std::vector<ParamSpec>& out) const;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// Rotary embeddings in the rotate-half layout of Hugging Face's Llama/Mixtral:
// dims [0, hd/2) pair with [hd/2, hd). The cos/sin table is computed once in
// float64 and cast to the input's dtype; it is a buffer, not a parameter.
class RotaryEmbeddingImpl : public torch::nn::Module {
 public:
  RotaryEmbeddingImpl(int64_t head_dim, int64_t max_seq_len, double theta);
  // x: [B, H, S, hd]; positions offset..offset+S-1.
  torch::Tensor forward(const torch::Tensor& x, int64_t offset = 0);

 private:
  torch::Tensor cos_, sin_;  // [max_seq_len, hd] float64
  // The table in the input's device and dtype, made on first use there (not
  // copied to a GPU on every call).
  torch::Tensor cos_cast_, sin_cast_;
};
TORCH_MODULE(RotaryEmbedding);

// Mean cross-entropy over positions where loss_mask is 1, in float32 or wider.
// logits: [B, S, V]; targets: int64 [B, S]; loss_mask: [B, S].
torch::Tensor masked_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                   const torch::Tensor& loss_mask);

// Image patches to the model width: a linear projection of the patch's
// pixels plus a learned embedding of the patch's place in its image.
// Parameters "proj.weight" [D, patch_dim], "proj.bias", "position" [patches, D].
class ImageEncoderImpl : public torch::nn::Module {
 public:
  ImageEncoderImpl(int64_t patch_dim, int64_t patches, int64_t d_model, double init_std);
  // patches: [N, patch_dim] in [-1, 1]; index: int64 [N] in [0, patches).
  torch::Tensor forward(const torch::Tensor& patches, const torch::Tensor& index);
  torch::nn::Linear proj{nullptr};
  torch::Tensor position;
  // Appends what this layer says of each of its parameters (named prefix + name).
  void describe(const std::string& prefix, std::vector<ParamSpec>& out) const;
};
TORCH_MODULE(ImageEncoder);

// Audio frames to the model width: the log-magnitude spectrum of each
// Hann-windowed frame, linearly projected, plus a sinusoidal embedding of the
// frame's place in its clip (no length limit). Parameters "proj.weight"
// [D, frame/2 + 1], "proj.bias".
class AudioEncoderImpl : public torch::nn::Module {
 public:
  AudioEncoderImpl(int64_t frame, int64_t d_model, double init_std);
  // frames: [N, frame] in [-1, 1]; index: int64 [N], the frame's number in its clip.
  torch::Tensor forward(const torch::Tensor& frames, const torch::Tensor& index);
  torch::nn::Linear proj{nullptr};
  // Appends what this layer says of each of its parameters (named prefix + name).
  void describe(const std::string& prefix, std::vector<ParamSpec>& out) const;

 private:
  torch::Tensor window_;
  int64_t d_model_;
};
TORCH_MODULE(AudioEncoder);

}  // namespace moxie
