// Capacity planning arithmetic.
#include "core/plan.h"

#include <cstdio>
#include <sstream>

#include "parallel/parallel_dims.h"

namespace moxie {
namespace {

bool moe_layer(const ModelOptions& m, int64_t i) {
  return i >= m.first_k_dense && (i - m.first_k_dense) % m.moe_every == 0;
}

std::string gb(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GB", bytes / 1e9);
  return buf;
}

std::string count(double n) {
  char buf[32];
  if (n >= 1e12) std::snprintf(buf, sizeof(buf), "%.3fT", n / 1e12);
  else if (n >= 1e9) std::snprintf(buf, sizeof(buf), "%.2fB", n / 1e9);
  else if (n >= 1e6) std::snprintf(buf, sizeof(buf), "%.2fM", n / 1e6);
  else std::snprintf(buf, sizeof(buf), "%.0f", n);
  return buf;
}

}  // namespace

ParallelDims layout_of(const Config& c, int64_t world) {
  LayoutShape shape;
  shape.num_experts = c.moe.num_experts;
  shape.n_heads = c.model.n_heads;
  shape.n_kv_heads = c.model.n_kv_heads;
  shape.vocab_size = c.model.vocab_size;
  const bool dense_layers = c.model.first_k_dense > 0 || c.model.moe_every > 1;
  shape.ffn_hidden = dense_layers ? c.model.ffn_hidden : 0;
  if (c.moe.num_shared_experts > 0) {
    shape.shared_expert_hidden = c.moe.shared_expert_hidden > 0
                                     ? c.moe.shared_expert_hidden
                                     : c.moe.expert_hidden * c.moe.num_shared_experts;
  }
  shape.seq_len = c.data.seq_len;
  shape.capacity = c.moe.capacity_factor > 0;
  shape.capacity_group = c.moe.capacity_group;
  return ParallelDims(c.parallel, world, shape);
}

Plan make_plan(const Config& c, const PlanOptions& o) {
  const auto& m = c.model;
  const auto& e = c.moe;
  ParallelDims dims = layout_of(c, o.world);
  const int64_t hd = m.head_dim > 0 ? m.head_dim : m.d_model / m.n_heads;
  const int64_t d = m.d_model;

  // Per layer, by how it is sharded: tp-split matrices, replicated vectors,
  // and experts (split over ep).
  const int64_t attention = d * m.n_heads * hd * 2 + d * m.n_kv_heads * hd * 2;
  const int64_t norms = 2 * d;
  const int64_t dense_ffn = 3 * d * m.ffn_hidden;
  const int64_t expert = 3 * d * e.expert_hidden;
  const int64_t shared_hidden = e.num_shared_experts == 0 ? 0
                                : e.shared_expert_hidden > 0 ? e.shared_expert_hidden
                                                             : e.expert_hidden * e.num_shared_experts;
  const int64_t shared = shared_hidden > 0 ? 3 * d * shared_hidden + d : 0;
  const int64_t router = e.num_experts * d;
  const int64_t embedding = m.vocab_size * d * (m.tie_embeddings ? 1 : 2);

  Plan p;
  int64_t tp_split = embedding, replicated = d /* final norm */, n_moe = 0;
  for (int64_t i = 0; i < m.n_layers; ++i) {
    tp_split += attention;
    replicated += norms;
    if (moe_layer(m, i)) {
      ++n_moe;
      tp_split += shared;
      replicated += router;
    } else {
      tp_split += dense_ffn;
    }
  }
  p.params_experts = n_moe * e.num_experts * expert;
  p.params_total = tp_split + replicated + p.params_experts;
  p.params_active = p.params_total - n_moe * (e.num_experts - e.top_k) * expert;
  // Matmul weights a token uses (the embedding lookup is not a matmul; the head is).
  const double matmul_active =
      static_cast<double>(p.params_active) - static_cast<double>(m.vocab_size * d) *
                                                 (m.tie_embeddings ? 0 : 1) - replicated + n_moe * router;
  p.flops_per_token = 6.0 * matmul_active + 12.0 * m.n_layers * m.n_heads * hd * c.data.seq_len;

  p.rank_expert_params = n_moe * (e.num_experts / dims.ep()) * expert;
  const int64_t rank_dense = tp_split / dims.tp() + replicated;
  p.rank_params = rank_dense + p.rank_expert_params;
  p.rank_param_bytes = static_cast<double>(p.rank_params) * o.param_bytes;
  p.rank_grad_bytes = p.rank_param_bytes;
  // Adam moments in fp32, plus an fp32 master copy when parameters are narrower.
  const double state = 8.0 + (o.param_bytes < 4 ? 4.0 : 0.0);
  const double dense_shards = c.parallel.zero1 ? static_cast<double>(dims.dp()) : 1.0;
  const double expert_shards = c.parallel.zero1 ? static_cast<double>(dims.expert_dp()) : 1.0;
  p.rank_optimizer_bytes = state * (rank_dense / dense_shards + p.rank_expert_params / expert_shards);

  // Activations kept for backward, per token per layer, in parameter bytes,
  // without recomputation: ~12 d for attention and norms (inputs, q, k, v,
  // output, residuals; the score matrix is never materialised with flash
  // attention), plus per MoE layer K routed copies of the token (d) and their
  // expert activations (gate, up, silu, product: 4 H), plus the shared expert.
  // Sequence parallelism divides them by tp. An estimate, to be checked by
  // measurement; it ignores the logits' (vocabulary-wide) buffer.
  const double tokens = static_cast<double>(c.train.micro_batch_size) * c.data.seq_len;
  double per_token = 0;
  for (int64_t i = 0; i < m.n_layers; ++i) {
    per_token += 12.0 * d;
    per_token += moe_layer(m, i) ? e.top_k * (d + 4.0 * e.expert_hidden) + 4.0 * shared_hidden
                                 : 4.0 * m.ffn_hidden;
  }
  p.rank_activation_bytes = tokens * per_token * o.param_bytes / dims.tp();
  p.rank_total_bytes = p.rank_param_bytes + p.rank_grad_bytes + p.rank_optimizer_bytes +
                       p.rank_activation_bytes;
  p.fits = p.rank_total_bytes <= o.device_bytes;

  // Each token's K copies leave the rank with probability (ep - 1) / ep, and
  // come back; the backward pass moves as much again.
  const double local_tokens = tokens / dims.tp();
  p.alltoall_bytes_per_step = dims.ep() > 1 ? 4.0 * n_moe * local_tokens * e.top_k * d *
                                                  o.param_bytes * (dims.ep() - 1) / dims.ep() *
                                                  c.train.grad_accum
                                            : 0.0;
  return p;
}

std::string describe(const Config& c, const PlanOptions& o, const Plan& p) {
  ParallelDims dims = layout_of(c, o.world);
  std::ostringstream s;
  s << "layout: " << dims.describe() << (c.parallel.zero1 ? ", ZeRO-1" : "") << "\n"
    << "parameters: " << count(p.params_total) << " total (" << count(p.params_experts)
    << " in routed experts), " << count(p.params_active) << " active per token\n"
    << "training FLOPs per token: " << count(p.flops_per_token) << "\n"
    << "per rank (" << o.param_bytes << "-byte parameters and gradients):\n"
    << "  parameters        " << count(p.rank_params) << " (" << count(p.rank_expert_params)
    << " expert) = " << gb(p.rank_param_bytes) << "\n"
    << "  gradients         " << gb(p.rank_grad_bytes) << "\n"
    << "  optimizer state   " << gb(p.rank_optimizer_bytes) << "\n"
    << "  activations (est) " << gb(p.rank_activation_bytes) << " for "
    << c.train.micro_batch_size << " x " << c.data.seq_len << " tokens\n"
    << "  total             " << gb(p.rank_total_bytes) << " of " << gb(o.device_bytes) << ": "
    << (p.fits ? "fits" : "DOES NOT FIT") << "\n"
    << "all-to-all per step per rank: " << gb(p.alltoall_bytes_per_step) << "\n";
  return s.str();
}

}  // namespace moxie
