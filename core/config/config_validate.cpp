// validate(): the rules a config must keep beyond each value's type, checked
// once, each failure one sentence naming the key path and what would do.
#include <unistd.h>

#include <string>
#include <utility>

#include "core/config/config.h"
#include "core/config/config_schema.h"

namespace moxie {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw ConfigError(message);
}

std::string str(double v) { return schema::format_double(v); }
std::string str(int64_t v) { return std::to_string(v); }

void positive(const std::string& key, int64_t v) {
  require(v >= 1, key + "=" + str(v) + " must be at least 1");
}
void at_most(const std::string& key, int64_t v, int64_t limit, const std::string& what) {
  require(v <= limit, key + "=" + str(v) + " is more than " + str(limit) + ", the most " + what +
                          " moxie accepts; lower it");
}
void non_negative(const std::string& key, double v) {
  require(v >= 0, key + "=" + str(v) + " must be >= 0");
}

// Physical memory in MB, 0 where the system does not say.
int64_t physical_memory_mb() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<int64_t>(pages) * page / (int64_t{1} << 20);
}

}  // namespace

void validate(const Config& c) {
  const auto& m = c.model;
  for (auto [key, v] : {std::pair{"model.vocab_size", m.vocab_size},
                        {"model.d_model", m.d_model},
                        {"model.n_layers", m.n_layers},
                        {"model.n_heads", m.n_heads},
                        {"model.n_kv_heads", m.n_kv_heads},
                        {"model.ffn_hidden", m.ffn_hidden},
                        {"model.max_seq_len", m.max_seq_len},
                        {"model.moe_every", m.moe_every}}) {
    positive(key, v);
  }
  for (auto [key, v] : {std::pair{"model.d_model", m.d_model},
                        {"model.head_dim", m.head_dim},
                        {"model.ffn_hidden", m.ffn_hidden}}) {
    at_most(key, v, limits::kWidth, "width");
  }
  at_most("model.vocab_size", m.vocab_size, limits::kVocab, "vocabulary");
  at_most("model.n_layers", m.n_layers, limits::kLayers, "number of layers");
  at_most("model.n_heads", m.n_heads, limits::kHeads, "number of heads");
  at_most("model.n_kv_heads", m.n_kv_heads, limits::kHeads, "number of heads");
  at_most("model.max_seq_len", m.max_seq_len, limits::kSeqLen, "sequence length");
  require(m.head_dim >= 0,
          "model.head_dim=" + str(m.head_dim) + " must be >= 0 (0: d_model / n_heads)");
  if (m.head_dim == 0) {
    require(m.d_model % m.n_heads == 0,
            "model.d_model=" + str(m.d_model) + " is not divisible by model.n_heads=" +
                str(m.n_heads) + "; pick d_model a multiple of n_heads or set model.head_dim");
    require((m.d_model / m.n_heads) % 2 == 0,
            "the head dimension d_model/n_heads=" + str(m.d_model / m.n_heads) +
                " must be even for rotary embeddings");
  } else {
    require(m.head_dim % 2 == 0,
            "model.head_dim=" + str(m.head_dim) + " must be even for rotary embeddings");
  }
  require(m.n_heads % m.n_kv_heads == 0,
          "model.n_heads=" + str(m.n_heads) +
              " is not divisible by model.n_kv_heads=" + str(m.n_kv_heads));
  require(m.rope_theta > 0, "model.rope_theta=" + str(m.rope_theta) + " must be > 0");
  require(m.norm_eps > 0, "model.norm_eps=" + str(m.norm_eps) + " must be > 0");
  require(m.init_std > 0, "model.init_std=" + str(m.init_std) + " must be > 0");
  require(m.first_k_dense >= 0 && m.first_k_dense <= m.n_layers,
          "model.first_k_dense=" + str(m.first_k_dense) +
              " must be between 0 and model.n_layers=" + str(m.n_layers));

  const auto& e = c.moe;
  positive("moe.num_experts", e.num_experts);
  positive("moe.expert_hidden", e.expert_hidden);
  at_most("moe.num_experts", e.num_experts, limits::kExperts, "number of experts");
  at_most("moe.expert_hidden", e.expert_hidden, limits::kWidth, "width");
  at_most("moe.shared_expert_hidden", e.shared_expert_hidden, limits::kWidth, "width");
  at_most("moe.num_shared_experts", e.num_shared_experts, limits::kSharedExperts,
          "number of shared experts");
  require(
      e.top_k >= 1 && e.top_k <= e.num_experts,
      "moe.top_k=" + str(e.top_k) + " must be between 1 and moe.num_experts=" + str(e.num_experts));
  non_negative("moe.aux_loss_coef", e.aux_loss_coef);
  non_negative("moe.z_loss_coef", e.z_loss_coef);
  non_negative("moe.bias_update_rate", e.bias_update_rate);
  require(e.capacity_factor >= 0,
          "moe.capacity_factor=" + str(e.capacity_factor) + " must be 0 (dropless) or > 0");
  require(
      e.capacity_group >= 0 && (e.capacity_group == 0 || c.data.seq_len % e.capacity_group == 0),
      "moe.capacity_group=" + str(e.capacity_group) +
          " must be 0 (one sequence) or a divisor of data.seq_len=" + str(c.data.seq_len));
  require(e.num_shared_experts >= 0,
          "moe.num_shared_experts=" + str(e.num_shared_experts) + " must be >= 0");
  require(e.shared_expert_hidden >= 0,
          "moe.shared_expert_hidden=" + str(e.shared_expert_hidden) + " must be >= 0");

  const auto& o = c.optim;
  require(o.lr > 0, "optim.lr=" + str(o.lr) + " must be > 0");
  require(o.min_lr >= 0 && o.min_lr <= o.lr,
          "optim.min_lr=" + str(o.min_lr) + " must be between 0 and optim.lr=" + str(o.lr));
  require(o.beta1 >= 0 && o.beta1 < 1, "optim.beta1=" + str(o.beta1) + " must be in [0, 1)");
  require(o.beta2 >= 0 && o.beta2 < 1, "optim.beta2=" + str(o.beta2) + " must be in [0, 1)");
  require(o.eps > 0, "optim.eps=" + str(o.eps) + " must be > 0");
  non_negative("optim.weight_decay", o.weight_decay);
  require(o.grad_clip >= 0,
          "optim.grad_clip=" + str(o.grad_clip) + " must be >= 0 (0: no clipping)");

  const auto& s = c.schedule;
  require(s.warmup_steps >= 0, "schedule.warmup_steps=" + str(s.warmup_steps) + " must be >= 0");
  require(s.decay_steps >= 0,
          "schedule.decay_steps=" + str(s.decay_steps) + " must be >= 0 (0: until train.steps)");

  const auto& d = c.data;
  positive("data.shuffle_block", d.shuffle_block);
  positive("data.prefetch_mb", d.prefetch_mb);
  at_most("data.shuffle_block", d.shuffle_block, limits::kShuffleBlock, "shuffle block");
  const int64_t memory_mb = physical_memory_mb();
  if (memory_mb > 0) {
    require(d.prefetch_mb <= memory_mb, "data.prefetch_mb=" + str(d.prefetch_mb) +
                                            " is more than this machine's memory (" +
                                            str(memory_mb) + " MB); lower it");
  }
  require(d.prefetch_threads >= 0 && d.prefetch_threads <= 64,
          "data.prefetch_threads=" + str(d.prefetch_threads) + " must be between 0 and 64");
  require(d.max_skipped >= 0, "data.max_skipped=" + str(d.max_skipped) + " must be >= 0");
  require(d.tokenizer == "byte",
          "data.tokenizer='" + d.tokenizer +
              "': the text source tokenizes bytes; for SentencePiece build a dataset with "
              "'moxie data build --tokenizer MODEL' and set data.source: dataset");
  require(!d.extensions.empty(), "data.extensions is empty; list at least one, e.g. [.txt]");
  require(d.eval_fraction > 0 && d.eval_fraction < 1,
          "data.eval_fraction=" + str(d.eval_fraction) + " must be between 0 and 1");
  positive("data.seq_len", d.seq_len);
  at_most("data.seq_len", d.seq_len, limits::kSeqLen, "sequence length");
  require(d.seq_len <= m.max_seq_len,
          "data.seq_len=" + str(d.seq_len) + " exceeds model.max_seq_len=" + str(m.max_seq_len));
  require(d.tokenizer != "byte" || m.vocab_size >= 259,
          "model.vocab_size=" + str(m.vocab_size) +
              " is smaller than the byte tokenizer's 259 ids; set it to at least 259");

  const auto& t = c.train;
  for (auto [key, v] : {std::pair{"train.steps", t.steps},
                        {"train.micro_batch_size", t.micro_batch_size},
                        {"train.grad_accum", t.grad_accum},
                        {"train.eval_batches", t.eval_batches},
                        {"train.log_every", t.log_every}}) {
    positive(key, v);
  }
  for (auto [key, v] : {std::pair{"train.micro_batch_size", t.micro_batch_size},
                        {"train.grad_accum", t.grad_accum},
                        {"train.eval_batches", t.eval_batches}}) {
    at_most(key, v, limits::kBatch, "batch count");
  }
  // Both at most 2^22 and 2^20 here, so the product cannot overflow.
  require(t.micro_batch_size * d.seq_len <= limits::kTokensPerMicroBatch,
          "train.micro_batch_size=" + str(t.micro_batch_size) + " times data.seq_len=" +
              str(d.seq_len) + " is more than " + str(limits::kTokensPerMicroBatch) +
              " tokens in one micro-batch; lower either (raise train.grad_accum instead)");
  require(t.eval_every >= 0,
          "train.eval_every=" + str(t.eval_every) + " must be >= 0 (0: only at the end)");
  require(t.threads >= 0, "train.threads=" + str(t.threads) + " must be >= 0 (0: all cores)");
  at_most("train.threads", t.threads, limits::kThreads, "threads per process");
  require(t.checkpoint_every >= 0, "train.checkpoint_every=" + str(t.checkpoint_every) +
                                       " must be >= 0 (0: no checkpoints)");
  positive("train.keep_checkpoints", t.keep_checkpoints);
  positive("train.max_nonfinite_steps", t.max_nonfinite_steps);
  require(t.stop_at >= 0,
          "train.stop_at=" + str(t.stop_at) + " must be >= 0 (0: run to train.steps)");
  require(
      t.stop_at == 0 || t.checkpoint_every > 0,
      "train.stop_at needs train.checkpoint_every > 0 (the run saves a checkpoint to resume from)");
  require(!t.resume.empty(),
          "train.resume is empty; use auto, latest, none or a checkpoint folder");
  require(!t.run_dir.empty(), "train.run_dir is empty; name a folder for the run's outputs");

  const auto& p = c.parallel;
  for (auto [key, v] : {std::pair{"parallel.dp", p.dp},
                        {"parallel.tp", p.tp},
                        {"parallel.ep", p.ep},
                        {"parallel.pp", p.pp}}) {
    positive(key, v);
    at_most(key, v, limits::kRanks, "ranks on one axis");
  }
  require(p.pp == 1, "parallel.pp=" + str(p.pp) +
                         ": pipeline parallelism is not implemented; set parallel.pp=1");
  require(p.collective_timeout_s >= 0 && p.collective_timeout_s <= 7 * 24 * 3600.0,
          "parallel.collective_timeout_s=" + str(p.collective_timeout_s) +
              " must be between 0 (no watchdog) and 604800 (a week) seconds");

  const auto& f = c.finetune;
  require(f.router_lr > 0, "finetune.router_lr=" + std::to_string(f.router_lr) + " must be > 0");
  require(f.early_stop_patience >= 0, "finetune.early_stop_patience=" + str(f.early_stop_patience) +
                                          " must be >= 0 (0: never stop early)");
  require(f.early_stop_patience == 0 || t.eval_every > 0,
          "finetune.early_stop_patience needs train.eval_every > 0 (it counts evaluations)");
  for (const auto& pattern : f.freeze)
    require(!pattern.empty(), "finetune.freeze has an empty pattern");
  const auto& l = c.lora;
  require(l.rank >= 0, "lora.rank=" + str(l.rank) + " must be >= 0 (0: no adapters)");
  at_most("lora.rank", l.rank, limits::kWidth, "width");
  require(l.dropout >= 0 && l.dropout < 1,
          "lora.dropout=" + std::to_string(l.dropout) + " must be in [0, 1)");
  require(l.rank == 0 || !l.targets.empty(),
          "lora.targets is empty; name the layers to adapt, e.g. [q_proj, v_proj]");
  for (const auto& target : l.targets) require(!target.empty(), "lora.targets has an empty name");
}

}  // namespace moxie
