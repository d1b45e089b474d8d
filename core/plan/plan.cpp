// Capacity planning arithmetic.
#include "core/plan/plan.h"

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
  if (n >= 1e12)
    std::snprintf(buf, sizeof(buf), "%.3fT", n / 1e12);
  else if (n >= 1e9)
    std::snprintf(buf, sizeof(buf), "%.2fB", n / 1e9);
  else if (n >= 1e6)
    std::snprintf(buf, sizeof(buf), "%.2fM", n / 1e6);
  else
    std::snprintf(buf, sizeof(buf), "%.0f", n);
  return buf;
}

}  // namespace

std::vector<ParamSpec> plan_param_specs(const Config& c, const ParallelDims& dims) {
  const auto& m = c.model;
  const auto& e = c.moe;
  const int64_t tp = dims.tp(), d = m.d_model;
  const int64_t hd = m.head_dim > 0 ? m.head_dim : d / m.n_heads;
  std::vector<ParamSpec> specs;
  auto add = [&](std::string name, std::vector<int64_t> shape, int tp_axis = -1,
                 ParamRole role = ParamRole::kDense) {
    specs.push_back({std::move(name), std::move(shape), tp_axis, role, false});
  };
  // Column-parallel: output rows split (axis 0); row-parallel: input columns (axis 1).
  auto column = [&](const std::string& name, int64_t out, int64_t in) {
    add(name, {out / tp, in}, 0);
  };
  auto row = [&](const std::string& name, int64_t out, int64_t in) {
    add(name, {out, in / tp}, 1);
  };
  auto swiglu = [&](const std::string& prefix, int64_t hidden) {
    column(prefix + "gate_proj.weight", hidden, d);
    column(prefix + "up_proj.weight", hidden, d);
    row(prefix + "down_proj.weight", d, hidden);
  };
  const int64_t shared_hidden = e.num_shared_experts == 0 ? 0
                                : e.shared_expert_hidden > 0
                                    ? e.shared_expert_hidden
                                    : e.expert_hidden * e.num_shared_experts;
  add("model.embed_tokens.weight", {m.vocab_size / tp, d}, 0, ParamRole::kEmbedding);
  for (int64_t i = 0; i < m.n_layers; ++i) {
    const std::string l = "model.layers." + std::to_string(i) + ".";
    column(l + "self_attn.q_proj.weight", m.n_heads * hd, d);
    column(l + "self_attn.k_proj.weight", m.n_kv_heads * hd, d);
    column(l + "self_attn.v_proj.weight", m.n_kv_heads * hd, d);
    row(l + "self_attn.o_proj.weight", d, m.n_heads * hd);
    if (moe_layer(m, i)) {
      const std::string b = l + "block_sparse_moe.";
      const int64_t local = e.num_experts / dims.ep();
      add(b + "gate.weight", {e.num_experts, d}, -1, ParamRole::kRouter);
      add(b + "experts.w13", {local, 2 * e.expert_hidden, d}, -1, ParamRole::kExpert);
      add(b + "experts.w2", {local, d, e.expert_hidden}, -1, ParamRole::kExpert);
      if (shared_hidden > 0) {
        swiglu(b + "shared_expert.", shared_hidden);
        add(b + "shared_expert_gate.weight", {1, d});
      }
    } else {
      swiglu(l + "mlp.", m.ffn_hidden);
    }
    add(l + "input_layernorm.weight", {d});
    add(l + "post_attention_layernorm.weight", {d});
  }
  add("model.norm.weight", {d});
  if (!m.tie_embeddings) column("lm_head.weight", m.vocab_size, d);
  return specs;
}

std::vector<ParamLayout> plan_rank_parameters(const Config& c, const ParallelDims& dims,
                                              int64_t rank) {
  const auto specs = plan_param_specs(c, dims);
  return make_param_layouts(specs, std::vector<bool>(specs.size(), true), dims,
                            coordinates_of(dims, rank), c.parallel.zero1);
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
                                : e.shared_expert_hidden > 0
                                    ? e.shared_expert_hidden
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
  const double matmul_active = static_cast<double>(p.params_active) -
                               static_cast<double>(m.vocab_size * d) * (m.tie_embeddings ? 0 : 1) -
                               replicated + n_moe * router;
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
  const auto here = coordinates_of(dims, o.rank);
  for (const auto& q : plan_rank_parameters(c, dims, o.rank)) {
    p.rank_params += q.numel();
    if (q.expert()) p.rank_expert_params += q.numel();
    if (keeps_optimizer_state(q, here)) owned += q.numel();
  }
  p.rank_param_bytes = static_cast<double>(p.rank_params) * o.param_bytes;
  p.rank_grad_bytes = p.rank_param_bytes;
  p.rank_optimizer_bytes = state * static_cast<double>(owned);
  p.worst_optimizer_bytes = p.rank_optimizer_bytes;
  if (c.parallel.zero1) {
    // Rank r keeps the shares of index r in the dp x tp group, r / tp in the
    // dp group and r / ep in the expert-dp group (the same shapes everywhere).
    // Owners are the same on every rank: rank 0's layouts tell them all.
    const auto params = plan_rank_parameters(c, dims, 0);
    auto loads = [&](SyncAxis axis) {
      std::vector<int64_t> load(static_cast<size_t>(sync_group_size(dims, axis)), 0);
      for (const auto& q : params)
        if (q.sync == axis) load[static_cast<size_t>(q.zero_owner)] += q.numel();
      return load;
    };
    const auto rep = loads(SyncAxis::kDpTp);
    const auto split = loads(SyncAxis::kDp);
    const auto expert = loads(SyncAxis::kExpertDp);
    for (int64_t r = 0; r < o.world; ++r) {
      const int64_t mine = rep[r] + split[r / dims.tp()] + expert[r / dims.ep()];
      p.worst_optimizer_bytes =
          std::max(p.worst_optimizer_bytes, state * static_cast<double>(mine));
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
  p.rank_total_bytes =
      p.rank_param_bytes + p.rank_grad_bytes + p.rank_optimizer_bytes + p.rank_activation_bytes;
  p.fits = p.rank_total_bytes - p.rank_optimizer_bytes + p.worst_optimizer_bytes <= o.device_bytes;

  // Each token's K copies leave the rank with probability (ep - 1) / ep, and
  // come back; the backward pass moves as much again.
  const double local_tokens = tokens / dims.tp();
  p.alltoall_bytes_per_step = dims.ep() > 1
                                  ? 4.0 * n_moe * local_tokens * e.top_k * d * o.param_bytes *
                                        (dims.ep() - 1) / dims.ep() * c.train.grad_accum
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
    << (c.parallel.zero1
            ? " (largest ZeRO-1 share of any rank: " + gb(p.worst_optimizer_bytes) + ")"
            : "")
    << "\n"
    << "  activations (est) " << gb(p.rank_activation_bytes) << " for " << c.train.micro_batch_size
    << " x " << c.data.seq_len << " tokens\n"
    << "  total             " << gb(p.rank_total_bytes) << " of " << gb(o.device_bytes) << ": "
    << (p.fits ? "fits" : "DOES NOT FIT") << (c.parallel.zero1 ? " (with the largest share)" : "")
    << "\n"
    << "all-to-all per step per rank: " << gb(p.alltoall_bytes_per_step) << "\n";
  return s.str();
}

}  // namespace moxie
