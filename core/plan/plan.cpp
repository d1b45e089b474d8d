// Capacity planning arithmetic.
#include "core/plan/plan.h"

#include "parallel/zero_owners.h"

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

std::vector<PlannedParam> plan_rank_parameters(const Config& c, const ParallelDims& dims,
                                               int64_t rank) {
  const auto& m = c.model;
  const auto& e = c.moe;
  const int64_t tp = dims.tp(), d = m.d_model;
  const int64_t hd = m.head_dim > 0 ? m.head_dim : d / m.n_heads;
  const auto split = tp > 1 ? ParamLayout::kTensorParallel : ParamLayout::kReplicated;
  std::vector<PlannedParam> params;
  auto add = [&](std::string name, int64_t numel, ParamLayout layout) {
    params.push_back({std::move(name), numel, layout, true});
  };
  const int64_t shared_hidden = e.num_shared_experts == 0 ? 0
                                : e.shared_expert_hidden > 0 ? e.shared_expert_hidden
                                                             : e.expert_hidden * e.num_shared_experts;
  add("model.embed_tokens.weight", m.vocab_size / tp * d, split);
  for (int64_t i = 0; i < m.n_layers; ++i) {
    const std::string l = "model.layers." + std::to_string(i) + ".";
    add(l + "self_attn.q_proj.weight", d * m.n_heads * hd / tp, split);
    add(l + "self_attn.k_proj.weight", d * m.n_kv_heads * hd / tp, split);
    add(l + "self_attn.v_proj.weight", d * m.n_kv_heads * hd / tp, split);
    add(l + "self_attn.o_proj.weight", m.n_heads * hd * d / tp, split);
    if (moe_layer(m, i)) {
      const std::string b = l + "block_sparse_moe.";
      add(b + "gate.weight", e.num_experts * d, ParamLayout::kReplicated);
      add(b + "experts.w13", e.num_experts / dims.ep() * 2 * e.expert_hidden * d, ParamLayout::kExpert);
      add(b + "experts.w2", e.num_experts / dims.ep() * d * e.expert_hidden, ParamLayout::kExpert);
      if (shared_hidden > 0) {
        for (const char* w : {"gate_proj", "up_proj", "down_proj"}) {
          add(b + "shared_expert." + w + ".weight", d * shared_hidden / tp, split);
        }
        add(b + "shared_expert_gate.weight", d, ParamLayout::kReplicated);
      }
    } else {
      for (const char* w : {"gate_proj", "up_proj", "down_proj"}) {
        add(l + "mlp." + w + ".weight", d * m.ffn_hidden / tp, split);
      }
    }
    add(l + "input_layernorm.weight", d, ParamLayout::kReplicated);
    add(l + "post_attention_layernorm.weight", d, ParamLayout::kReplicated);
  }
  add("model.norm.weight", d, ParamLayout::kReplicated);
  if (!m.tie_embeddings) add("lm_head.weight", d * m.vocab_size / tp, split);

  if (c.parallel.zero1) {
    // The trainer's three ZeRO-1 groups and this rank's index in each.
    struct Group { ParamLayout layout; int64_t size, index; };
    const Group groups[] = {{ParamLayout::kReplicated, dims.dp() * tp, rank},
                            {ParamLayout::kTensorParallel, dims.dp(), rank / tp},
                            {ParamLayout::kExpert, dims.expert_dp(), rank / dims.ep()}};
    for (const auto& g : groups) {
      std::vector<int64_t> numel;
      std::vector<size_t> where;
      for (size_t i = 0; i < params.size(); ++i) {
        if (params[i].layout == g.layout) {
          numel.push_back(params[i].numel);
          where.push_back(i);
        }
      }
      const auto owners = zero1_owners(numel, static_cast<int>(g.size));
      for (size_t k = 0; k < where.size(); ++k) params[where[k]].optimizer_here = owners[k] == g.index;
    }
  }
  return params;
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

  if (o.rank < 0 || o.rank >= o.world) {
    throw std::invalid_argument("rank " + std::to_string(o.rank) + " is not in [0, " +
                                std::to_string(o.world) + ")");
  }
  // Adam moments in fp32, plus an fp32 master copy when parameters are narrower.
  const double state = 8.0 + (o.param_bytes < 4 ? 4.0 : 0.0);
  // Exactly what rank `o.rank` builds, and the ZeRO-1 share it keeps; the
  // worst share over ranks decides whether the layout fits.
  int64_t owned = 0;
  for (const auto& q : plan_rank_parameters(c, dims, o.rank)) {
    p.rank_params += q.numel;
    if (q.layout == ParamLayout::kExpert) p.rank_expert_params += q.numel;
    if (q.optimizer_here) owned += q.numel;
  }
  p.rank_param_bytes = static_cast<double>(p.rank_params) * o.param_bytes;
  p.rank_grad_bytes = p.rank_param_bytes;
  p.rank_optimizer_bytes = state * static_cast<double>(owned);
  p.worst_optimizer_bytes = p.rank_optimizer_bytes;
  if (c.parallel.zero1) {
    // Rank r keeps the shares of index r in the dp x tp group, r / tp in the
    // dp group and r / ep in the expert-dp group (the same shapes everywhere).
    const auto params = plan_rank_parameters(c, dims, 0);
    auto loads = [&](ParamLayout layout, int64_t size) {
      std::vector<int64_t> numel;
      for (const auto& q : params)
        if (q.layout == layout) numel.push_back(q.numel);
      std::vector<int64_t> load(size, 0);
      const auto owners = zero1_owners(numel, static_cast<int>(size));
      for (size_t k = 0; k < numel.size(); ++k) load[owners[k]] += numel[k];
      return load;
    };
    const auto rep = loads(ParamLayout::kReplicated, dims.dp() * dims.tp());
    const auto split = loads(ParamLayout::kTensorParallel, dims.dp());
    const auto expert = loads(ParamLayout::kExpert, dims.expert_dp());
    for (int64_t r = 0; r < o.world; ++r) {
      const int64_t mine = rep[r] + split[r / dims.tp()] + expert[r / dims.ep()];
      p.worst_optimizer_bytes = std::max(p.worst_optimizer_bytes, state * static_cast<double>(mine));
    }
  }

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
  p.fits = p.rank_total_bytes - p.rank_optimizer_bytes + p.worst_optimizer_bytes <= o.device_bytes;

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
    << "rank " << o.rank << " (" << o.param_bytes << "-byte parameters and gradients):\n"
    << "  parameters        " << count(p.rank_params) << " (" << count(p.rank_expert_params)
    << " expert) = " << gb(p.rank_param_bytes) << "\n"
    << "  gradients         " << gb(p.rank_grad_bytes) << "\n"
    << "  optimizer state   " << gb(p.rank_optimizer_bytes)
    << (c.parallel.zero1 ? " (largest ZeRO-1 share of any rank: " + gb(p.worst_optimizer_bytes) + ")" : "")
    << "\n"
    << "  activations (est) " << gb(p.rank_activation_bytes) << " for "
    << c.train.micro_batch_size << " x " << c.data.seq_len << " tokens\n"
    << "  total             " << gb(p.rank_total_bytes) << " of " << gb(o.device_bytes) << ": "
    << (p.fits ? "fits" : "DOES NOT FIT") << (c.parallel.zero1 ? " (with the largest share)" : "")
    << "\n"
    << "all-to-all per step per rank: " << gb(p.alltoall_bytes_per_step) << "\n";
  return s.str();
}

}  // namespace moxie
