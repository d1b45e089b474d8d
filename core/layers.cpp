// RMSNorm, rotary embeddings, masked cross-entropy.
#include "core/layers.h"

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

torch::Tensor RotaryEmbeddingImpl::forward(const torch::Tensor& x) {
  const int64_t S = x.size(2);
  const int64_t half = x.size(3) / 2;
  TORCH_CHECK(S <= cos_.size(0), "sequence length ", S, " exceeds model.max_seq_len ",
              cos_.size(0));
  auto cos = cos_.narrow(0, 0, S).to(x.device(), x.scalar_type());
  auto sin = sin_.narrow(0, 0, S).to(x.device(), x.scalar_type());
  auto rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

torch::Tensor masked_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                   const torch::Tensor& loss_mask) {
  const int64_t V = logits.size(-1);
  auto flat = logits.reshape({-1, V}).to(at_least_float(logits.scalar_type()));
  auto per_token = torch::nn::functional::cross_entropy(
      flat, targets.reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  auto mask = loss_mask.reshape({-1}).to(per_token.scalar_type());
  return (per_token * mask).sum() / mask.sum().clamp_min(1.0);
}

}  // namespace moxie
