// The config's schema, for core/config*.cpp only: each options struct's keys,
// listed once in fields(), and the sections of a Config, in sections(). The
// reader, the writer and the key lists all walk these lists.
#pragma once

#include <string>

#include "core/config/config.h"

namespace moxie::schema {

template <class F>
void fields(ModelOptions& o, F&& f) {
  f("vocab_size", o.vocab_size);
  f("d_model", o.d_model);
  f("n_layers", o.n_layers);
  f("n_heads", o.n_heads);
  f("n_kv_heads", o.n_kv_heads);
  f("head_dim", o.head_dim);
  f("ffn_hidden", o.ffn_hidden);
  f("max_seq_len", o.max_seq_len);
  f("rope_theta", o.rope_theta);
  f("norm_eps", o.norm_eps);
  f("init_std", o.init_std);
  f("tie_embeddings", o.tie_embeddings);
  f("qkv_bias", o.qkv_bias);
  f("first_k_dense", o.first_k_dense);
  f("moe_every", o.moe_every);
}
template <class F>
void fields(MoEOptions& o, F&& f) {
  f("num_experts", o.num_experts);
  f("top_k", o.top_k);
  f("expert_hidden", o.expert_hidden);
  f("score_func", o.score_func);
  f("renormalize", o.renormalize);
  f("aux_loss_coef", o.aux_loss_coef);
  f("z_loss_coef", o.z_loss_coef);
  f("bias_update_rate", o.bias_update_rate);
  f("capacity_factor", o.capacity_factor);
  f("drop_policy", o.drop_policy);
  f("capacity_group", o.capacity_group);
  f("num_shared_experts", o.num_shared_experts);
  f("shared_expert_hidden", o.shared_expert_hidden);
}
template <class F>
void fields(OptimOptions& o, F&& f) {
  f("lr", o.lr);
  f("min_lr", o.min_lr);
  f("beta1", o.beta1);
  f("beta2", o.beta2);
  f("eps", o.eps);
  f("weight_decay", o.weight_decay);
  f("grad_clip", o.grad_clip);
  f("decay_embeddings", o.decay_embeddings);
}
template <class F>
void fields(ScheduleOptions& o, F&& f) {
  f("warmup_steps", o.warmup_steps);
  f("decay", o.decay);
  f("decay_steps", o.decay_steps);
}
template <class F>
void fields(DataOptions& o, F&& f) {
  f("source", o.source);
  f("path", o.path);
  f("extensions", o.extensions);
  f("tokenizer", o.tokenizer);
  f("eval_fraction", o.eval_fraction);
  f("seq_len", o.seq_len);
  f("eval_path", o.eval_path);
  f("shuffle_block", o.shuffle_block);
  f("prefetch_threads", o.prefetch_threads);
  f("prefetch_mb", o.prefetch_mb);
  f("on_corrupt", o.on_corrupt);
  f("max_skipped", o.max_skipped);
  f("verify_shards", o.verify_shards);
}
template <class F>
void fields(TrainOptions& o, F&& f) {
  f("steps", o.steps);
  f("micro_batch_size", o.micro_batch_size);
  f("grad_accum", o.grad_accum);
  f("eval_every", o.eval_every);
  f("eval_batches", o.eval_batches);
  f("log_every", o.log_every);
  f("seed", o.seed);
  f("run_dir", o.run_dir);
  f("device", o.device);
  f("dtype", o.dtype);
  f("threads", o.threads);
  f("checkpoint_every", o.checkpoint_every);
  f("keep_checkpoints", o.keep_checkpoints);
  f("stop_at", o.stop_at);
  f("resume", o.resume);
  f("max_nonfinite_steps", o.max_nonfinite_steps);
}
template <class F>
void fields(FinetuneOptions& o, F&& f) {
  f("base", o.base);
  f("freeze", o.freeze);
  f("router_lr", o.router_lr);
  f("early_stop_patience", o.early_stop_patience);
}
template <class F>
void fields(LoraOptions& o, F&& f) {
  f("rank", o.rank);
  f("alpha", o.alpha);
  f("dropout", o.dropout);
  f("targets", o.targets);
}
template <class F>
void fields(ParallelOptions& o, F&& f) {
  f("dp", o.dp);
  f("tp", o.tp);
  f("ep", o.ep);
  f("pp", o.pp);
  f("zero1", o.zero1);
  f("overlap_grad_sync", o.overlap_grad_sync);
  f("collective_timeout_s", o.collective_timeout_s);
}

template <class F>
void sections(Config& c, F&& f) {
  f("model", c.model);
  f("moe", c.moe);
  f("optim", c.optim);
  f("schedule", c.schedule);
  f("data", c.data);
  f("train", c.train);
  f("parallel", c.parallel);
  f("finetune", c.finetune);
  f("lora", c.lora);
}

// Shortest text that reads back as exactly the same double (1e-05 as
// "1.0e-05"): how to_yaml writes doubles and validate() names them.
std::string format_double(double v);

}  // namespace moxie::schema
