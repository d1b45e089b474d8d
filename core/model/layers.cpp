// RMSNorm, rotary embeddings, masked cross-entropy.
#include "core/model/layers.h"

#include "core/model/fused.h"
#include "parallel/tensor_parallel.h"

namespace moxie {
namespace {
torch::ScalarType at_least_float(torch::ScalarType t) {
  return t == torch::kDouble ? torch::kDouble : torch::kFloat;
}
}  // namespace

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  if (fused_rms_norm_applies(x, weight)) return fused_rms_norm(x, weight, eps_);
  auto xf = x.to(at_least_float(x.scalar_type()));
  auto normed = xf * torch::rsqrt(xf.pow(2).mean(-1, true) + eps_);
  return weight * normed.to(x.scalar_type());
}

RotaryEmbeddingImpl::RotaryEmbeddingImpl(int64_t head_dim, int64_t max_seq_len, double theta) {
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto inv_freq = 1.0 / torch::pow(theta, torch::arange(0, head_dim, 2, opts) / head_dim);
  auto freqs = torch::outer(torch::arange(max_seq_len, opts), inv_freq);  // [S, hd/2]
  auto emb = torch::cat({freqs, freqs}, -1);
  // Plain members, not buffers: derived state, never saved, kept in float64
  // whatever dtype the parameters are cast to.
  cos_ = emb.cos();
  sin_ = emb.sin();
}

torch::Tensor RotaryEmbeddingImpl::forward(const torch::Tensor& x, int64_t offset) {
  const int64_t S = x.size(2);
  const int64_t half = x.size(3) / 2;
  TORCH_CHECK(offset + S <= cos_.size(0), "sequence length ", offset + S,
              " exceeds model.max_seq_len ", cos_.size(0));
  if (!cos_cast_.defined() || cos_cast_.device() != x.device() ||
      cos_cast_.scalar_type() != x.scalar_type()) {
    cos_cast_ = cos_.to(x.device(), x.scalar_type());
    sin_cast_ = sin_.to(x.device(), x.scalar_type());
  }
  auto cos = cos_cast_.narrow(0, offset, S);
  auto sin = sin_cast_.narrow(0, offset, S);
  auto rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

torch::Tensor masked_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                   const torch::Tensor& loss_mask) {
  const int64_t V = logits.size(-1);
  torch::Tensor per_token;
  if (fused_cross_entropy_applies(logits)) {
    // No float32 copy of the [tokens, vocabulary] logits (core/fused.h).
    per_token = fused_cross_entropy(logits.reshape({-1, V}), targets.reshape({-1}));
  } else {
    auto flat = logits.reshape({-1, V}).to(at_least_float(logits.scalar_type()));
    per_token = torch::nn::functional::cross_entropy(
        flat, targets.reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  }
  auto mask = loss_mask.reshape({-1}).to(per_token.scalar_type());
  return (per_token * mask).sum() / mask.sum().clamp_min(1.0);
}

ImageEncoderImpl::ImageEncoderImpl(int64_t patch_dim, int64_t patches, int64_t d_model,
                                   double init_std) {
  proj = register_module("proj", torch::nn::Linear(patch_dim, d_model));
  torch::NoGradGuard no_grad;
  proj->weight.normal_(0, init_std);
  proj->bias.zero_();
  position = register_parameter("position", torch::randn({patches, d_model}) * init_std);
}

torch::Tensor ImageEncoderImpl::forward(const torch::Tensor& patches, const torch::Tensor& index) {
  return proj(patches.to(proj->weight.scalar_type())) + position.index_select(0, index);
}

AudioEncoderImpl::AudioEncoderImpl(int64_t frame, int64_t d_model, double init_std)
    : d_model_(d_model) {
  proj = register_module("proj", torch::nn::Linear(frame / 2 + 1, d_model));
  torch::NoGradGuard no_grad;
  proj->weight.normal_(0, init_std);
  proj->bias.zero_();
  window_ = torch::hann_window(frame, torch::TensorOptions().dtype(torch::kFloat));
}

torch::Tensor AudioEncoderImpl::forward(const torch::Tensor& frames, const torch::Tensor& index) {
  // Features are data, not weights: no gradient flows into them.
  torch::Tensor features;
  {
    torch::NoGradGuard no_grad;
    auto spectrum = torch::fft::rfft(frames.to(torch::kFloat) * window_.to(frames.device()));
    features = torch::log1p(spectrum.abs());
  }
  // Sinusoidal positions: sin(i / 10000^(2k/D)) and cos of the same.
  const int64_t half = d_model_ / 2;
  auto k = torch::arange(half, torch::TensorOptions().dtype(torch::kDouble));
  auto freq = torch::exp(-std::log(10000.0) * 2.0 * k / static_cast<double>(d_model_));
  auto angle = index.to(torch::kDouble).unsqueeze(1) * freq.unsqueeze(0);
  auto pos = torch::cat({torch::sin(angle), torch::cos(angle)}, 1);
  if (pos.size(1) < d_model_)
    pos = torch::nn::functional::pad(
        pos, torch::nn::functional::PadFuncOptions({0, d_model_ - pos.size(1)}));
  const auto dtype = proj->weight.scalar_type();
  return proj(features.to(dtype)) + pos.to(dtype).to(frames.device());
}

void RMSNormImpl::describe(const std::string& prefix, std::vector<ParamSpec>& out) const {
  add_spec(out, prefix, "weight", weight);
}

void ImageEncoderImpl::describe(const std::string& prefix, std::vector<ParamSpec>& out) const {
  add_spec(out, prefix, "proj.weight", proj->weight);
  add_spec(out, prefix, "proj.bias", proj->bias);
  add_spec(out, prefix, "position", position);
}

void AudioEncoderImpl::describe(const std::string& prefix, std::vector<ParamSpec>& out) const {
  add_spec(out, prefix, "proj.weight", proj->weight);
  add_spec(out, prefix, "proj.bias", proj->bias);
}

}  // namespace moxie
